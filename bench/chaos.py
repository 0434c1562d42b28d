"""The data-safety chaos run (issue 15): bounded, loopback only; prints the tables.

``uv run python -m bench chaos [--quick|--smoke] [--only NAME,...] [--soak-s N]``

Scenarios, each on its own scratch copy of an indexed store (ml-100k; the tiny test catalogue with
``--smoke``):

- ``server``: the LangGraph dev server records feedback (recommend requests with an idempotency
  key) while `memrec feedback` processes try to write the same store; the server is SIGKILLed
  mid-run and restarted, the client retries what failed; then the queue must drain;
- ``writers``: 4 loops of `memrec feedback` processes, and 4 `memrec worker` processes at once
  (``bench/chaos_writers.py``);
- ``kills``: `memrec index` and `memrec worker` SIGKILLed at random points;
- ``full_disk``: feedback and index on a full tmpfs (root only), then after freeing space;
- ``faults``: every damaged-file / stuck-job / bad-write fault, flagged and repaired one by one;
- ``deletion``: a user with a marker in their data deleted while the server serves them;
- ``soak``: the server's RSS under a steady load (10 minutes in full mode).

Columns: interactions sent / recorded / propagated exactly once (their user memory written once),
duplicates (interactions recorded twice, or a cause applied twice), memory writes lost (doctor's
version / audit / vector findings), stuck jobs (pending or running at the end), writes refused
clearly (the writer lock's message, naming the holder), marker occurrences after deletion, and
doctor's verdict. Writes ``<out>/chaos.json``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.chaos_common import Row, copy_home
from bench.common import BenchOptions, BenchResult, finish, new_result, target
from bench.setup import ensure_index

NAME = "chaos"
SCENARIOS = ("server", "writers", "kills", "full_disk", "faults", "deletion", "soak")
METHOD = (
    "Each scenario runs on its own scratch copy of the indexed store, with real processes on "
    "127.0.0.1 (the LangGraph dev server, `memrec` subprocesses), real SIGKILLs and a real tmpfs "
    "for the full disk. Counts come from the store's event log and `memrec doctor` afterwards."
)


def run(opts: BenchOptions) -> BenchResult:
    """Run the scenarios (``MEMREC_CHAOS_ONLY=a,b`` picks some) and write ``chaos.json``.

    ``MEMREC_CHAOS_SOAK_S`` overrides the soak's length (600 s full, 180 s quick, 40 s smoke).
    """
    only = tuple(
        s for s in os.environ.get("MEMREC_CHAOS_ONLY", ",".join(SCENARIOS)).split(",") if s
    )
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"MEMREC_CHAOS_ONLY: unknown {sorted(unknown)}; accepted {SCENARIOS}")
    dataset = (opts.datasets or ["ml-100k"])[0]
    if opts.smoke:
        dataset = str(Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny-movies")
    soak_env = os.environ.get("MEMREC_CHAOS_SOAK_S")
    soak_seconds = float(soak_env) if soak_env else opts.size(600, 180, 40)
    result = new_result(
        NAME, opts, METHOD, dataset=dataset, scenarios=list(only), soak_s=soak_seconds
    )
    os.environ["MEMREC_DATA_DIR"] = str(opts.data_dir)  # the `memrec` subprocesses read it
    ensure_index(dataset, opts)
    scratch = Path(tempfile.mkdtemp(prefix="memrec-chaos-"))
    try:
        _run_scenarios(result, opts, dataset, scratch, only, soak_seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _targets(result)
    finish(result, opts)
    _print_extra(result)
    return result


def _print_extra(result: BenchResult) -> None:
    """The fault table and the soak series (the main table is printed by ``finish``)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    faults = result.config.get("faults") or []
    if faults:
        table = Table(title="injected faults: doctor, error message, repair")
        for column in faults[0]:
            table.add_column(column)
        for fault in faults:
            table.add_row(*(str(v) for v in fault.values()))
        console.print(table)
    soak = result.config.get("soak")
    if soak:
        table = Table(
            title=f"soak: server RSS ({soak['requests']} requests, {soak['failed']} failed)"
        )
        for column in ("t_s", "rss_mb", "threads", "open_files", "requests"):
            table.add_column(column)
        for sample in soak["series"]:
            table.add_row(
                *(str(sample[c]) for c in ("t_s", "rss_mb", "threads", "open_files", "requests"))
            )
        console.print(table)
        console.print(
            f"RSS {soak['rss_start_mb']} MB at start, {soak['rss_after_warmup_mb']} MB after the "
            f"warm-up, {soak['rss_end_mb']} MB at the end; slope after the warm-up "
            f"{soak['slope_mb_per_min']} MB/min"
        )


def _run_scenarios(
    result: BenchResult,
    opts: BenchOptions,
    dataset: str,
    scratch: Path,
    only: tuple[str, ...],
    soak_seconds: float,
) -> None:
    from bench import chaos_faults, chaos_privacy, chaos_server_run, chaos_soak, chaos_writers

    home = opts.home

    def fresh(name: str) -> Path:
        return copy_home(home, scratch / name)

    steps: dict[str, Callable[[], list[Row] | Row]] = {
        "server": lambda: chaos_server_run.server_and_cli(dataset, fresh("server"), opts),
        "writers": lambda: [
            chaos_writers.cli_writers(dataset, fresh("writers"), opts.size(120, 60, 20)),
            chaos_writers.long_writers(dataset, fresh("long-writers")),
        ],
        "kills": lambda: [
            chaos_writers.index_kills(dataset, scratch / "index-kills", opts.size(6, 4, 2)),
            chaos_writers.worker_kills(
                dataset, fresh("worker-kills"), opts.size(60, 30, 8), opts.size(6, 4, 2)
            ),
        ],
        "full_disk": lambda: chaos_faults.full_disk(dataset, home, opts.data_dir),
        "deletion": lambda: chaos_privacy.deletion(scratch / "deletion"),
    }
    for name in only:
        started = time.monotonic()
        if name == "faults":
            faults = chaos_faults.damaged_files(dataset, home, scratch / "faults")
            result.config["faults"] = faults
        elif name == "soak":
            result.config["soak"] = chaos_soak.soak(
                dataset, fresh("soak"), scratch / "soak-server", seconds=soak_seconds
            )
        else:
            out = steps[name]()
            for row in out if isinstance(out, list) else [out]:
                result.rows.append(row.as_dict())
        result.notes.append(f"{name}: {time.monotonic() - started:.0f} s")


def _targets(result: BenchResult) -> None:
    rows = result.rows
    if rows:
        dup = sum(int(r["duplicates"]) for r in rows)
        lost = sum(int(r["memory writes lost"]) for r in rows)
        stuck = sum(int(r["stuck jobs"]) for r in rows)
        result.targets += [
            target("duplicates (all scenarios)", "0", dup, dup == 0),
            target("memory writes lost", "0", lost, lost == 0),
            target("stuck jobs after restart / repair", "0", stuck, stuck == 0),
        ]
        marker = [r["marker hits"] for r in rows if r["marker hits"] != "-"]
        if marker:
            hits = sum(int(m) for m in marker)
            result.targets.append(target("marker occurrences after deletion", "0", hits, hits == 0))
    faults: list[dict[str, Any]] = result.config.get("faults") or []
    if faults:
        missed = sum(1 for f in faults if f["doctor flag"].startswith("MISSED"))
        unrepaired = sum(1 for f in faults if f["repaired"] != "yes")
        result.targets += [
            target("injected faults doctor missed", "0", missed, missed == 0),
            target("injected faults not repaired", "0", unrepaired, unrepaired == 0),
        ]
    soak = result.config.get("soak")
    if soak:
        slope = soak["slope_mb_per_min"]
        result.targets.append(
            target("server RSS slope after warm-up (MB/min)", "<= 0.5", slope, abs(slope) <= 0.5)
        )
