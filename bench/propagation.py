"""Propagation throughput and feedback-to-memory staleness of the job worker.

On a private copy of the indexed store (Chroma embedded, SQLite event log), three measurements:

- ``drain``: interactions (random user, unseen item) are recorded first, then the worker drains
  them with the offline LMMem and ``in_flight`` jobs at a time; jobs/s = jobs / wall time,
  ``cpu_ms_per_job`` = process CPU / jobs.
- ``model``: the same against the OpenAI-compatible test server (a subprocess) answering every
  propagate call after 200 ms; ideal = in_flight / 0.2 s.
- ``scaled``: the model drain with 8 in flight against the scaled deployment's stores
  (``bench/deploy.py``: the event log and queue in Postgres, the memories on a Chroma server, so
  Chroma's upserts run in the server's process, not under the worker's GIL), when the PostgreSQL
  binaries are installed; the Chroma server's and Postgres' CPU per job beside the worker's.
- ``staleness``: interactions are recorded at a fixed rate (10 and 20 per second) for a while, with
  the worker running in the same process as the recorder (the embedded deployment); staleness of
  one interaction = the time its job was settled done minus the time it was recorded. Jobs not
  done when the window closes count with their age at that moment (a lower bound) and show in
  ``done_fraction``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    BenchOptions,
    BenchResult,
    finish,
    new_result,
    pct,
    reference,
    target,
)
from bench.servers import model_server
from bench.setup import context, ensure_index
from dataio.paths import store_dir
from memory_store.events import EventLog
from memory_store.workspace import Workspace, get_workspace
from nodes.record import record_interaction
from schemas.context import MemRecContext
from services.event_loop import run as run_async
from services.worker import PropagationWorker

NAME = "propagation"
LATENCY_S = 0.2
METHOD = (
    "Private copy of the indexed store (embedded Chroma, SQLite event log). drain: N interactions "
    "recorded first, then drained by the worker with `in_flight` jobs at a time (offline LMMem); "
    "model: the same with LMMem on the test server (subprocess, 200 ms per call), 80 jobs at 1 in "
    "flight and 240 at 8, ideal = in_flight / 0.2 s; staleness: interactions recorded at a fixed "
    "rate while the worker runs in the same process; staleness = job done time - interaction "
    "recorded time. x_ref = cpu_ms_per_job / the same-run reference workload's CPU ms. scaled: "
    "the 200 ms model drain with 8 in flight on Postgres (event log, queue, audit) and a Chroma "
    "server (memories), the worker in this process; chroma_cpu_ms_per_job and "
    "postgres_cpu_ms_per_job are those servers' CPU over the drain."
)


def _private_home(dataset: str, opts: BenchOptions, tmp: Path) -> Path:
    ensure_index(dataset, opts)
    src = store_dir(dataset, opts.home)
    home = tmp / "home"
    shutil.copytree(src, store_dir(dataset, home), ignore=shutil.ignore_patterns("events.sqlite*"))
    EventLog(store_dir(dataset, home) / "events.sqlite").close()  # a fresh, empty log on purpose
    return home


def _pairs(ws: Workspace, n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` distinct (user, unseen item) pairs, seeded."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()
    while len(out) < n:
        u = int(rng.integers(ws.dataset.n_users))
        i = int(rng.integers(ws.dataset.n_items))
        if (u, i) in seen or ws.graph.has(u, i):
            continue
        seen.add((u, i))
        out.append((ws.dataset.user_ids[u], ws.dataset.item_ids[i]))
    return out


def _worker(ws: Workspace, ctx: MemRecContext, in_flight: int) -> PropagationWorker:
    return PropagationWorker(ws, ctx, in_flight=in_flight, poll_s=0.05)


async def _drain(ws: Workspace, ctx: MemRecContext, in_flight: int) -> int:
    return await _worker(ws, ctx, in_flight).drain()


def _drain_row(
    ws: Workspace, ctx: MemRecContext, pairs: list[tuple[str, str]], in_flight: int, label: str
) -> dict[str, Any]:
    for user, item in pairs:
        record_interaction(ws, user, item)
    cpu, started = time.process_time(), time.perf_counter()
    ran = run_async(_drain(ws, ctx, in_flight))
    wall = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu) * 1000.0 / max(1, ran)
    return {
        "what": label,
        "in_flight": in_flight,
        "jobs": ran,
        "wall_s": round(wall, 2),
        "jobs_per_s": round(ran / wall, 2),
        "cpu_ms_per_job": round(cpu_ms, 1),
    }


async def _staleness(
    ws: Workspace, ctx: MemRecContext, pairs: list[tuple[str, str]], rate: float, grace_s: float
) -> dict[str, Any]:
    worker = _worker(ws, ctx, 8)
    worker.start()
    recorded: list[str] = []
    started = time.perf_counter()
    for n, (user, item) in enumerate(pairs):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        event = await asyncio.to_thread(record_interaction, ws, user, item)
        recorded.append(event.interaction_id)
        worker.wake()
    await worker.wait_idle(timeout_s=grace_s)
    cut = time.time()
    await worker.stop()
    recorded_at = {r.event.interaction_id: r.recorded_at for r in ws.events.interaction_rows()}
    ages, done = [], 0
    for iid in recorded:
        job = ws.events.get_job(iid)
        assert job is not None
        if job.status == "done":
            done += 1
            ages.append(job.updated_at - recorded_at[iid])
        else:
            ages.append(cut - recorded_at[iid])
    return {
        "what": f"staleness at {rate:g}/s",
        "in_flight": 8,
        "jobs": len(recorded),
        "done_fraction": round(done / max(1, len(recorded)), 3),
        "staleness_p50_s": pct(ages, 50),
        "staleness_p95_s": pct(ages, 95),
        "staleness_max_s": round(max(ages), 3) if ages else None,
    }


def run(opts: BenchOptions) -> BenchResult:
    """Run the propagation benchmark and write ``propagation.json``."""
    dataset = (opts.datasets or ["ml-100k"])[0]
    n_offline = opts.size(200, 80, 6)
    # jobs per model row: 30 rounds at 8 in flight, so the start (no model call before the first
    # contexts are loaded) and the end (the last writes) weigh little in a rate (at 80 jobs they
    # were ~0.35 s of 2.6 s); 80 at 1 in flight (16 s)
    n_model = {1: opts.size(80, 40, 4), 8: opts.size(240, 80, 8)}
    seconds = opts.size(15, 8, 1)
    rates = [2.0] if opts.smoke else [10.0, 20.0]
    latency = 0.02 if opts.smoke else LATENCY_S
    result = new_result(
        NAME, opts, METHOD, dataset=dataset, latency_s=latency, rates=rates, seconds=seconds
    )
    ref = reference(result)
    with tempfile.TemporaryDirectory() as tmp:
        home = _private_home(dataset, opts, Path(tmp))
        ws = get_workspace(dataset, home=str(home))
        ws.warm.wait(timeout=120)
        total = n_offline * 2 + sum(n_model.values()) + int(sum(rates) * seconds)
        pairs = iter(_pairs(ws, total, seed=3))
        offline = context(dataset, home)
        try:
            for in_flight in (1, 8):
                batch = [next(pairs) for _ in range(n_offline)]
                row = _drain_row(ws, offline, batch, in_flight, "drain offline")
                result.rows.append(row | {"x_ref": round(row["cpu_ms_per_job"] / ref, 3)})
            with model_server(latency, process=True) as server:
                model = context(dataset, home, server.spec())
                for in_flight in (1, 8):
                    batch = [next(pairs) for _ in range(n_model[in_flight])]
                    row = _drain_row(ws, model, batch, in_flight, "drain 200 ms model")
                    ideal = in_flight / latency
                    result.rows.append(
                        row
                        | {"ideal_per_s": ideal, "efficiency": round(row["jobs_per_s"] / ideal, 3)}
                    )
            for rate in rates:
                batch = [next(pairs) for _ in range(int(rate * seconds))]
                result.rows.append(run_async(_staleness(ws, offline, batch, rate, 10.0)))
        finally:
            ws.events.close()
    _scaled(result, opts, dataset, latency, n_model[8])
    _targets(result)
    result.notes.append(f"reference workload: {ref} ms CPU in this run")
    finish(result, opts)
    return result


def _scaled(result: BenchResult, opts: BenchOptions, dataset: str, latency: float, n: int) -> None:
    """The model drain (8 in flight) against the scaled deployment's Postgres and Chroma server."""
    from bench.deploy import scaled_deployment
    from tests.support.postgres import missing_for_postgres

    missing = missing_for_postgres()
    if opts.smoke or missing:
        why = "smoke" if opts.smoke else "; ".join(missing)
        result.notes.append(f"scaled deployment not measured: {why}")
        return
    saved = os.environ.get("MEMREC_DATABASE_URL")
    with scaled_deployment(dataset, opts, servers=1, workers=0) as dep:
        os.environ["MEMREC_DATABASE_URL"] = dep.database_url
        try:
            ws = get_workspace(dataset, home=str(dep.home), chroma_url=dep.chroma_url)
            ws.warm.wait(timeout=120)
            parts = dep.cpu_parts()
            with model_server(latency, process=True) as server:
                ctx = replace(context(dataset, dep.home, server.spec()), chroma_url=dep.chroma_url)
                servers = {name: parts[name]() for name in ("chroma", "postgres")}
                before = {name: _tree_cpu(pids) for name, pids in servers.items()}
                row = _drain_row(ws, ctx, _pairs(ws, n, seed=11), 8, "drain 200 ms model, scaled")
                for name, pids in servers.items():
                    spent = (_tree_cpu(pids) - before[name]) * 1000.0 / max(1, row["jobs"])
                    row[f"{name}_cpu_ms_per_job"] = round(spent, 1)
            ideal = 8 / latency
            row |= {"ideal_per_s": ideal, "efficiency": round(row["jobs_per_s"] / ideal, 3)}
            result.rows.append(row)
            ws.events.close()
        finally:
            if saved is None:
                os.environ.pop("MEMREC_DATABASE_URL", None)
            else:
                os.environ["MEMREC_DATABASE_URL"] = saved


def _tree_cpu(pids: Iterable[int]) -> float:
    """CPU seconds of these processes and their children."""
    from bench.cpu_parts import tree_cpu_seconds

    return sum(tree_cpu_seconds(pid) for pid in pids)


def _targets(result: BenchResult) -> None:
    rows = result.rows
    offline = max((r["jobs_per_s"] for r in rows if r["what"] == "drain offline"), default=None)
    if offline is not None:
        result.targets.append(target("offline jobs/s", ">= 20", offline, offline >= 20))
    for what, name in (
        ("drain 200 ms model", "200 ms model, N=8: fraction of ideal 40/s"),
        ("drain 200 ms model, scaled", "scaled stores, 200 ms model, N=8: fraction of ideal 40/s"),
    ):
        model = next((r for r in rows if r["what"] == what and r["in_flight"] == 8), None)
        if model is not None:
            eff = model["efficiency"]
            result.targets.append(target(name, ">= 0.8", eff, eff >= 0.8))
    stale = next((r for r in rows if r["what"] == "staleness at 20/s"), None)
    if stale is not None:
        p95 = stale["staleness_p95_s"]
        result.targets.append(target("staleness p95 at 20/s (s)", "<= 2", p95, p95 <= 2))
