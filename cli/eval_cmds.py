"""`memrec eval` and `memrec report`: run the benchmark and combine runs into a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli.options import CliError, model_options, user_errors
from evaluation.methods import (
    AGENTIC_METHODS,
    METHOD_GROUPS,
    METHODS,
    expand_methods,
    get_method,
    missing_extra,
    write_switches,
)
from services.event_loop import run as run_async

_console = Console()


def _eval_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix from the message: bad names, foreign or old files, missing data."""
    from evaluation.leakage import LeakageError

    return (ValueError, LookupError, LeakageError, OSError)


def _print_table(table: str) -> None:
    """Rendered on a terminal; plain Markdown otherwise (pipes and logs keep every digit)."""
    if _console.is_terminal:
        from rich.markdown import Markdown

        _console.print(Markdown(table))
    else:
        _console.print(table, markup=False, highlight=False, soft_wrap=True)


@model_options
def eval_command(
    dataset: Annotated[str, typer.Option(help="dataset name or generic-format folder")],
    method: Annotated[
        str,
        typer.Option(
            help=f"one or more (comma-separated) of {', '.join(METHODS)}; or the groups "
            f"{', '.join(METHOD_GROUPS)} ('all' = every method but the strong baselines)"
        ),
    ],
    roles: Annotated[str, typer.Option(help="role preset of the agentic methods")] = "offline",
    users: Annotated[
        int | None,
        typer.Option(help="seeded user sample (default: all offline, 1000 with LLM roles)"),
    ] = None,
    candidates: Annotated[int, typer.Option(help="candidates per user: 10 or 20")] = 10,
    concurrency: Annotated[int, typer.Option(help="requests in flight")] = 8,
    k: Annotated[int | None, typer.Option("--k", help="override the neighbour count k")] = None,
    out: Annotated[Path, typer.Option(help="results folder")] = Path("results"),
    home: Annotated[str | None, typer.Option(help="MemRec home (default MEMREC_HOME)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="where the datasets are")] = None,
    candidates_file: Annotated[
        Path | None, typer.Option(help="explicit test candidate file (must match the dataset)")
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            help="processes for several methods (methods sharing a warm-up stay together)"
        ),
    ] = 1,
) -> None:
    """Evaluate one method (or all) under the benchmark protocol; prints the results table."""
    from evaluation.runner import CANDIDATE_COUNTS, ensure_index, run_eval
    from evaluation.tables import markdown_table

    skipped: list[str] = []
    names = expand_methods(method, skipped)
    for reason in skipped:
        _console.print(f"[yellow]skipped[/]: {reason}")
    results = []
    with user_errors(*_eval_errors()):
        if candidates not in CANDIDATE_COUNTS:
            raise CliError(f"--candidates must be one of {CANDIDATE_COUNTS}, not {candidates}")
        missing = [m for m in map(missing_extra, names) if m is not None]
        if missing:
            raise CliError(missing[0])
        if jobs > 1 and len(names) > 1:
            ensure_index(dataset, home, data_dir)  # once, before the processes start
            groups = partition_methods(names, jobs)
            results = _run_in_processes(groups, out)
            names = []
        for name in names:
            results.append(
                run_async(
                    run_eval(
                        dataset,
                        name,
                        roles=roles,
                        users=users,
                        candidates=candidates,
                        concurrency=concurrency,
                        out_dir=out,
                        k=k,
                        home=home,
                        data_dir=data_dir,
                        candidates_file=candidates_file,
                        progress=True,
                    )
                )
            )
    _print_table(markdown_table(results))
    for result in results:
        _console.print(f"{result.run}: wall {result.wall_s:.1f} s -> {out / result.run}.json")


# Relative cost of a method on the offline roles (a warm-up counts like two rankings).
_COST = {  # relative wall time on ml-100k (memrec's shared warm-up group: 2 + its size)
    "memrec-no-write": 2.0,
    "isolated": 1.1,
    "vanilla": 1.0,
    "memrec-generic-rules": 3.6,
    "bpr": 1.1,
    "itemknn": 0.7,
    "recency-knn": 0.5,
    "transition": 0.2,
    "ease": 0.3,
    "als": 0.4,
    "sasrec": 9.6,
}
# Methods whose warm-up is memrec's (no write switch): one process warms up once for all.
_SHARED_WARMUP = tuple(name for name in AGENTIC_METHODS if not write_switches(get_method(name)))


def partition_methods(names: list[str], jobs: int) -> list[list[str]]:
    """Split methods over ``jobs`` processes: shared-warm-up methods together, greedy by cost."""
    shared = [n for n in names if n in _SHARED_WARMUP]
    units = ([shared] if shared else []) + [[n] for n in names if n not in _SHARED_WARMUP]
    cost = {tuple(u): (2.0 + len(u) if u is shared else _COST.get(u[0], 0.5)) for u in units}
    loads: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(jobs)]
    for unit in sorted(units, key=lambda u: -cost[tuple(u)]):
        i = min(range(jobs), key=lambda j: loads[j][0])
        loads[i] = (loads[i][0] + cost[tuple(unit)], loads[i][1] + unit)
    return [group for _, group in loads if group]


def _run_in_processes(groups: list[list[str]], out: Path) -> list[Any]:
    """Run each group as `memrec eval --method a,b` in its own process, then read the runs."""
    import os
    import subprocess
    import sys
    import time

    from evaluation.results import load_run
    from evaluation.sasrec import THREADS_ENV

    started = time.time()
    base = _strip_options(sys.argv[1:], ("--method", "--jobs"))
    share = str(max(1, (os.cpu_count() or 1) // len(groups)))  # torch threads per process
    env = {**os.environ, THREADS_ENV: os.environ.get(THREADS_ENV, share)}
    procs = [
        subprocess.Popen(
            [sys.argv[0], *base, "--method", ",".join(g), "--jobs", "1"],
            stdout=subprocess.DEVNULL,
            env=env,
        )
        for g in groups
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise OSError(f"an evaluation process failed (exit codes {codes}); see its messages above")
    runs = sorted(
        (p for p in out.glob("*.json") if p.stat().st_mtime >= started),
        key=lambda p: p.stat().st_mtime,
    )
    wanted = {m for g in groups for m in g}
    latest = {}
    for path in runs:
        try:
            run = load_run(path)
        except ValueError:
            continue
        if run.method in wanted:
            latest[run.method] = run
    return [latest[m] for g in groups for m in g if m in latest]


def _strip_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in names:
            skip = True
            continue
        if any(arg.startswith(f"{n}=") for n in names):
            continue
        out.append(arg)
    return out


def report_command(
    dirs: Annotated[list[Path], typer.Argument(help="results folders written by `memrec eval`")],
) -> None:
    """Combine every run in DIR... into report.md and PNG plots (written into the first DIR)."""
    from evaluation.report import build_report

    with user_errors(*_eval_errors()):
        report = build_report(dirs)
    _print_table(report.table)
    _console.print(f"wrote {report.markdown_path} and {len(report.plots)} plots")


def register(app: typer.Typer) -> None:
    """Add the eval and report commands to the `memrec` app."""
    app.command("eval")(eval_command)
    app.command("report")(report_command)
