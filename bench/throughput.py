"""Recommend throughput against a model server with a fixed 200 ms per call, in both deployments.

The test server runs in a subprocess (``bench/_server.py``): on a thread of the measuring process
its request handling would compete with our client for the GIL and the figure would be the
server's limit, not ours. For each concurrency c, 12 x c requests for distinct users (two model
calls each: the facet cache never answers) run with at most c in flight; requests/s is compared
with the ideal c / (2 x 0.2 s).

``single process``: the graph invoked in this process (the embedded default). ``scaled``: the
same requests over HTTP to ``bench/deploy.py``'s deployment (Postgres, a Chroma server,
``SCALED_SERVERS`` serving processes, one worker), when the PostgreSQL binaries are installed.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from bench.common import (
    BenchOptions,
    BenchResult,
    finish,
    new_result,
    print_result,
    reference,
    summary,
    target,
)
from bench.cpu_parts import CpuParts, children_matching
from bench.servers import ModelServer, model_server
from bench.setup import context, ensure_index, sample_users, workspace
from bench.timing import cpu_profile, http_clock
from graph.recommend import graph as recommend_graph
from services.event_loop import run as run_async

NAME = "throughput"
LATENCY_S = 0.2
CONCURRENCY = [1, 8, 64]
# requests per unit of concurrency: 12 x c requests, so ramp-up and tail are a small part of a wave
# (at 4 x c, the first and last of four rounds cost c=64 about a fifth of its throughput)
PER_SLOT = 12
SCALED_SERVERS = 2
METHOD = (
    "Production recommend graph, both roles on the OpenAI-compatible test server (subprocess, "
    "200 ms per chat call). Per concurrency c: 12*c requests for distinct users, at most c in "
    "flight (asyncio semaphore), one event loop; requests/s = requests / wall time; ideal = "
    "c / (calls per request x 0.2 s) with 2 calls per request. Scaled: measured once the "
    "serving processes are quiet after a warm-up (their memory cache filled). "
    "cpu_ms_per_request = process CPU time / requests (our side only; scaled: the serving "
    "processes' CPU). x_ref = "
    "cpu_ms_per_request / the same-run reference workload's CPU ms. Per wave, the CPU of each "
    "part (bench/cpu_parts.py: the bench client, the model server subprocess, the serving "
    "processes, every process of the Postgres cluster, the Chroma server, the workers) and of "
    "the machine (system-wide busy time, which includes any other load) in ms per request; "
    "ceiling_per_s = 1000 x cores / machine ms per request, parts_ceiling_per_s the same with "
    "the parts' sum."
)
CLIENT, MODEL = "bench client", "model server"
ROW_KEYS = ["deployment", "concurrency", "requests_per_s"]  # lead the accounting table
TOTALS = ("cpu_ms_parts", "cpu_ms_other", "cpu_ms_machine")  # after the parts' columns
ACCOUNTING = ("ceiling_per_s", "parts_ceiling_per_s")


async def _wave(ctx: Any, users: list[str], concurrency: int) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(user: str) -> None:
        async with gate:
            started = time.perf_counter()
            await recommend_graph.ainvoke({"user_id": user}, context=ctx)
            latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    await asyncio.gather(*(one(u) for u in users))
    return time.perf_counter() - started, latencies


def _row(
    deployment: str, c: int, n: int, wall: float, lat: list[float], cpu_ms: float, ref: float,
    latency: float, calls: float,
) -> dict[str, Any]:  # fmt: skip
    ideal = c / (2 * latency)
    rps = n / wall
    s = summary(lat)
    return {
        "deployment": deployment,
        "concurrency": c,
        "requests": n,
        "calls_per_request": round(calls, 2),
        "requests_per_s": round(rps, 2),
        "ideal_per_s": round(ideal, 2),
        "efficiency": round(rps / ideal, 3),
        "latency_p50_ms": s["p50"],
        "latency_p99_ms": s["p99"],
        "cpu_ms_per_request": round(cpu_ms, 2),
        "x_ref": round(cpu_ms / ref, 3),
    }


def _single_process(
    result: BenchResult, opts: BenchOptions, dataset: str, server: ModelServer, levels: list[int]
) -> None:
    per, latency, ref = _per(opts), result.config["latency_s"], reference(result)
    ws = workspace(dataset, opts)
    ctx = context(dataset, opts.home, server.spec())
    meter = CpuParts({CLIENT: list, MODEL: _model_server_pids})
    with http_clock() as http:
        run_async(_wave(ctx, sample_users(ws, 4, seed=9), 4))  # warm-up: open, connect
        offset = 4
        for c in levels:
            users = sample_users(ws, per * c, seed=9, skip=offset)
            offset += per * c
            http.reset()
            cpu, before = time.process_time(), meter.snapshot()
            wall, latencies = run_async(_wave(ctx, users, c))
            cpu_ms = (time.process_time() - cpu) * 1000.0 / len(users)
            row = _row("single process", c, len(users), wall, latencies, cpu_ms, ref, latency,
                       http.calls / len(users))  # fmt: skip
            result.rows.append(row | meter.per_request(before, meter.snapshot(), len(users)))
        if not opts.smoke:
            users = sample_users(ws, 32, seed=9, skip=offset)
            result.config["profile_cpu_per_request"] = cpu_profile(
                lambda: _wave(ctx, users, 16), len(users)
            )


def _per(opts: BenchOptions) -> int:
    """Requests per unit of concurrency in a wave: PER_SLOT, so a wave is mostly steady state."""
    return 2 if opts.smoke else PER_SLOT


async def _http_wave(
    url: str, context: dict[str, Any], users: list[str], concurrency: int
) -> tuple[float, list[float]]:
    """The scaled waves' load generator: aiohttp, the leanest client at hand.

    It shares the machine with what it measures: httpx cost about 4 ms of CPU per request here.
    """
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:

        async def one(user: str) -> None:
            async with gate:
                started = time.perf_counter()
                body = {"input": {"user_id": user}, "context": context}
                async with client.post("/recommend", json=body) as reply:
                    reply.raise_for_status()
                    await reply.read()
                latencies.append((time.perf_counter() - started) * 1000.0)

        started = time.perf_counter()
        await asyncio.gather(*(one(u) for u in users))
        return time.perf_counter() - started, latencies


def _model_server_pids() -> list[int]:
    """The model test server subprocess (``bench/_server.py``) of this process."""
    return children_matching("bench._server")


def _scaled(
    result: BenchResult,
    opts: BenchOptions,
    dataset: str,
    server: ModelServer,
    levels: list[int],
) -> None:
    from bench.deploy import scaled_deployment

    per, latency, ref = _per(opts), result.config["latency_s"], reference(result)
    ws = workspace(dataset, opts)
    ctx = {"roles": "offline", "lmmem": server.spec(), "llmrec": server.spec()}
    with scaled_deployment(dataset, opts, servers=SCALED_SERVERS, workers=1) as dep:
        pids = dep.serving_pids()
        meter = CpuParts({CLIENT: list, MODEL: _model_server_pids, **dep.cpu_parts()})
        run_async(_http_wave(dep.url, ctx, sample_users(ws, 16, seed=9), 16))  # warm-up
        result.config["scaled_settle_s"] = round(dep.settle(), 1)  # the cache warm-up is done
        offset = 16  # the same users as the single process: its caches are not these processes'
        for c in levels:
            users = sample_users(ws, per * c, seed=9, skip=offset)
            offset += per * c
            cpu, before = dep.cpu_seconds(pids), meter.snapshot()
            wall, latencies = run_async(_http_wave(dep.url, ctx, users, c))
            cpu_ms = (dep.cpu_seconds(pids) - cpu) * 1000.0 / len(users)
            row = _row(f"scaled ({SCALED_SERVERS} servers)", c, len(users), wall, latencies,
                       cpu_ms, ref, latency, 2.0)  # fmt: skip
            result.rows.append(row | meter.per_request(before, meter.snapshot(), len(users)))


def run(opts: BenchOptions) -> BenchResult:
    """Run the throughput benchmark (single process, then scaled) and write ``throughput.json``."""
    from tests.support.postgres import missing_for_postgres

    levels = [1, 4] if opts.smoke else CONCURRENCY
    latency = 0.02 if opts.smoke else LATENCY_S
    dataset = (opts.datasets or ["ml-100k"])[0]
    result = new_result(NAME, opts, METHOD, dataset=dataset, latency_s=latency, levels=levels)
    ensure_index(dataset, opts)
    with model_server(latency, process=True) as server:
        _single_process(result, opts, dataset, server, levels)
        missing = missing_for_postgres()
        if opts.smoke or missing:
            result.notes.append(
                "scaled deployment not measured: " + ("smoke" if opts.smoke else "; ".join(missing))
            )
        else:
            _scaled(result, opts, dataset, server, levels)
    for row in result.rows:
        if row["concurrency"] == 64:
            result.targets.append(
                target(
                    f"{row['deployment']}: throughput at c=64, fraction of ideal 160/s",
                    ">= 0.8",
                    row["efficiency"],
                    row["efficiency"] >= 0.8,
                )
            )
    result.notes.append(
        "cpu_ms_per_request bounds throughput on one core: 1000 / cpu_ms requests/s at most, "
        "whatever the concurrency; the scaled deployment spreads it over its serving processes, "
        "and shares the machine's cores with the model server, Postgres, Chroma and the client."
    )
    finish(result, opts, Console(file=io.StringIO()))  # written; printed below in two tables
    print_tables(result)
    return result


def print_tables(result: BenchResult, console: Console | None = None) -> None:
    """The throughput table, then where each wave's CPU went (ms per request) and the ceilings."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    found = dict.fromkeys(k for row in result.rows for k in row if k.startswith("cpu_ms_"))
    keys = [k for k in found if k not in (*TOTALS, "cpu_ms_per_request")]  # the parts first
    keys += [k for k in (*TOTALS, *ACCOUNTING) if any(k in row for row in result.rows)]
    lean = [{k: v for k, v in row.items() if k not in keys} for row in result.rows]
    print_result(result.model_copy(update={"rows": lean}), console)
    table = Table(title="CPU ms per request by part; ceiling = requests/s with every core busy")
    columns = [*ROW_KEYS, *keys]
    for column in columns:
        table.add_column(column.removeprefix("cpu_ms_"), overflow="fold")
    for row in result.rows:
        table.add_row(*(str(row.get(c, "-")) for c in columns))
    console.print(table)
