"""Recommend throughput against a model server with a fixed 200 ms per call.

The test server runs in a subprocess (``bench/_server.py``): on a thread of the measuring process
its request handling would compete with our client for the GIL and the figure would be the
server's limit, not ours. For each concurrency c, 4 x c requests for distinct users (two model
calls each: the facet cache never answers) run with at most c in flight; requests/s is compared
with the ideal c / (2 x 0.2 s).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import BenchOptions, BenchResult, finish, new_result, summary, target
from bench.servers import model_server
from bench.setup import context, ensure_index, sample_users, workspace
from bench.timing import cpu_profile, http_clock
from graph.recommend import graph as recommend_graph

NAME = "throughput"
LATENCY_S = 0.2
CONCURRENCY = [1, 8, 64]
METHOD = (
    "Production recommend graph, both roles on the OpenAI-compatible test server (subprocess, "
    "200 ms per chat call). Per concurrency c: 4*c requests for distinct users, at most c in "
    "flight (asyncio semaphore), one event loop; requests/s = requests / wall time; ideal = "
    "c / (calls per request x 0.2 s) with 2 calls per request. cpu_ms_per_request = process CPU "
    "time / requests (our side only)."
)


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


def run(opts: BenchOptions) -> BenchResult:
    """Run the throughput benchmark and write ``throughput.json``."""
    levels = [1, 4] if opts.smoke else CONCURRENCY
    per = 2 if opts.smoke else 4
    latency = 0.02 if opts.smoke else LATENCY_S
    dataset = (opts.datasets or ["ml-100k"])[0]
    result = new_result(NAME, opts, METHOD, dataset=dataset, latency_s=latency, levels=levels)
    ensure_index(dataset, opts)
    ws = workspace(dataset, opts)
    with http_clock() as http, model_server(latency, process=True) as server:
        ctx = context(dataset, opts.home, server.spec())
        offset = 0
        asyncio.run(_wave(ctx, sample_users(ws, 4, seed=9), 4))  # warm-up: open, connect
        offset += 4
        for c in levels:
            users = sample_users(ws, per * c, seed=9, skip=offset)
            offset += per * c
            http.reset()
            cpu = time.process_time()
            wall, latencies = asyncio.run(_wave(ctx, users, c))
            cpu_ms = (time.process_time() - cpu) * 1000.0 / len(users)
            calls = http.calls / len(users)
            ideal = c / (2 * latency)
            rps = len(users) / wall
            lat = summary(latencies)
            result.rows.append(
                {
                    "concurrency": c,
                    "requests": len(users),
                    "calls_per_request": round(calls, 2),
                    "requests_per_s": round(rps, 2),
                    "ideal_per_s": round(ideal, 2),
                    "efficiency": round(rps / ideal, 3),
                    "latency_p50_ms": lat["p50"],
                    "latency_p99_ms": lat["p99"],
                    "cpu_ms_per_request": round(cpu_ms, 2),
                }
            )
        if not opts.smoke:
            users = sample_users(ws, 64, seed=9, skip=offset)
            result.config["profile_cpu_per_request"] = cpu_profile(
                lambda: _wave(ctx, users, 16), len(users)
            )
    top = result.rows[-1]
    if top["concurrency"] == 64:
        result.targets.append(
            target(
                "throughput at c=64, fraction of ideal 160/s",
                ">= 0.8",
                top["efficiency"],
                top["efficiency"] >= 0.8,
            )
        )
    result.notes.append(
        "cpu_ms_per_request bounds throughput on one core: 1000 / cpu_ms requests/s at most, "
        "whatever the concurrency."
    )
    finish(result, opts)
    return result
