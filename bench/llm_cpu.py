"""Event-loop CPU per LLM-backed recommend request, thread hops, and where the CPU goes.

Both roles on the OpenAI-compatible test server with zero latency, in a subprocess (its handling
never shares our GIL). Requests run one at a time for distinct users (the facet cache never
answers, so each makes two model calls); for each the event-loop thread's CPU time
(``time.thread_time`` on the loop's thread) and the CPU of every other thread of the process are
measured, and every hand-off to a thread pool (``loop.run_in_executor``, which ``asyncio.to_thread``
uses too) is counted. A fixed reference workload timed in the same run gives ``x_ref`` (the figure
divided by the reference), which reads the same on a loaded or an idle machine.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.common import BenchOptions, BenchResult, finish, new_result, summary, target
from bench.servers import model_server
from bench.setup import context, ensure_index, sample_users, workspace
from graph.recommend import graph as recommend_graph
from roles.transport import transport_kind
from services.event_loop import loop_factory

NAME = "llm_cpu"
TARGET_MS = 7.0
METHOD = (
    "Production recommend graph, both roles on the OpenAI-compatible test server (subprocess, "
    "0 ms latency). Sequential requests for distinct users after warm-up requests; per request: "
    "loop_cpu_ms = CPU time of the event-loop thread (time.thread_time), other_cpu_ms = process "
    "CPU of every other thread, thread_hops = loop.run_in_executor calls (asyncio.to_thread "
    "included). reference_ms = a fixed pure-Python workload (dicts, strings, JSON, sorting) timed "
    "in the same run; x_ref = loop_cpu_ms / reference_ms. Measured on uvloop (the loop of "
    "uvicorn, the LangGraph server and MemRec's CLI) and on the standard asyncio loop (a library "
    "caller's own asyncio.run), each in its own runner, interleaved in rounds."
)
LOOPS = ("uvloop", "asyncio")
ROUNDS = 3


def _reference_once() -> None:
    """A fixed mix of what a request spends CPU on: dicts, strings, JSON, sorting."""
    words = [f"w{n % 977}:{n}" for n in range(20_000)]
    counts: dict[str, int] = {}
    for w in words:
        key = w.split(":", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    rows = [{"id": n, "text": " ".join(words[n : n + 8]), "score": n / 7} for n in range(2_000)]
    json.loads(json.dumps(rows))
    sorted(words, key=lambda w: (len(w), w))


def reference_ms(repeats: int = 7) -> float:
    """CPU milliseconds of the reference workload (median of ``repeats`` runs)."""
    _reference_once()
    samples = []
    for _ in range(repeats):
        started = time.thread_time()
        _reference_once()
        samples.append((time.thread_time() - started) * 1000.0)
    return round(statistics.median(samples), 3)


class HopCounter:
    """Counts ``run_in_executor`` calls on the running loop while installed."""

    def __init__(self) -> None:
        self.hops = 0
        self.where: dict[str, int] = {}

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wrap ``loop.run_in_executor`` (instance attribute: this loop only)."""
        original = loop.run_in_executor

        def counted(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
            self.hops += 1
            name = getattr(func, "__qualname__", None) or type(func).__name__
            inner = getattr(func, "func", None)  # functools.partial / contextvars.Context.run
            if inner is not None:
                name = getattr(inner, "__qualname__", name)
            elif args and callable(args[0]):  # Context.run(fn, ...)
                name = getattr(args[0], "__qualname__", name)
            self.where[name] = self.where.get(name, 0) + 1
            return original(executor, func, *args)

        loop.run_in_executor = counted  # type: ignore[method-assign]


async def _measure(ctx: Any, users: list[str], hops: HopCounter) -> list[tuple[float, float]]:
    hops.install(asyncio.get_running_loop())
    samples = []
    for user in users:
        loop_cpu, process_cpu = time.thread_time(), time.process_time()
        await recommend_graph.ainvoke({"user_id": user}, context=ctx)
        loop_ms = (time.thread_time() - loop_cpu) * 1000.0
        other_ms = (time.process_time() - process_cpu) * 1000.0 - loop_ms
        samples.append((loop_ms, max(0.0, other_ms)))
    return samples


def _profile(make: Callable[[], Awaitable[Any]], per: int, top: int = 20) -> list[dict[str, Any]]:
    """The event-loop thread's CPU per function (own time), per request."""
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    asyncio.run(make())  # type: ignore[arg-type]
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (file, line, func), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((own, cum, calls, f"{file.split('site-packages/')[-1]}:{line}:{func}"))
    rows.sort(reverse=True)
    return [
        {
            "function": name,
            "own_cpu_ms": round(own * 1000 / per, 3),
            "cum_cpu_ms": round(cum * 1000 / per, 3),
            "calls": round(calls / per, 1),
        }
        for own, cum, calls, name in rows[:top]
    ]


def _run_on(loop: str, make: Callable[[], Awaitable[Any]]) -> Any:
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(make())  # type: ignore[arg-type]


def run(opts: BenchOptions) -> BenchResult:
    """Measure and write ``llm_cpu.json``."""
    n = opts.size(60, 30, 4)
    dataset = (opts.datasets or ["ml-100k"])[0]
    result = new_result(
        NAME, opts, METHOD, dataset=dataset, requests=n, transport=transport_kind(), loops=LOOPS
    )
    ensure_index(dataset, opts)
    ws = workspace(dataset, opts)
    ref_before = reference_ms()
    per_round = max(1, n // ROUNDS)
    samples: dict[str, list[tuple[float, float]]] = {loop: [] for loop in LOOPS}
    hops: dict[str, HopCounter] = {loop: HopCounter() for loop in LOOPS}
    with model_server(0.0, process=True) as server:
        ctx = context(dataset, opts.home, server.spec())
        skip = 0
        for _ in range(ROUNDS):  # interleaved: both loops see the same machine load
            for loop in LOOPS:
                warm = sample_users(ws, 3, seed=21, skip=skip)
                users = sample_users(ws, per_round, seed=21, skip=skip + 3)
                skip += 3 + per_round

                async def measure(warm: list[str] = warm, users: list[str] = users) -> Any:
                    await _measure(ctx, warm, HopCounter())  # this loop's pool: connect
                    return await _measure(ctx, users, hops[loop])  # noqa: B023

                samples[loop] += _run_on(loop, measure)
        if not opts.smoke:
            more = sample_users(ws, min(n, 30), seed=21, skip=skip)
            result.config["profile_loop_cpu_per_request"] = _profile(
                lambda: _measure(ctx, more, HopCounter()), len(more)
            )
    ref = round(statistics.median([ref_before, reference_ms()]), 3)
    for loop in LOOPS:
        loop_ms = [s[0] for s in samples[loop]]
        other_ms = [s[1] for s in samples[loop]]
        summ = summary(loop_ms)
        per = len(samples[loop])
        result.rows.append(
            {
                "event_loop": loop,
                "requests": per,
                "loop_cpu_ms_p50": summ["p50"],
                "loop_cpu_ms_mean": summ["mean"],
                "loop_cpu_ms_p99": summ["p99"],
                "other_threads_cpu_ms_mean": summary(other_ms)["mean"],
                "thread_hops_per_request": round(hops[loop].hops / per, 2),
                "reference_ms": ref,
                "x_ref_p50": round(summ["p50"] / ref, 3),
            }
        )
        result.config[f"thread_hops_by_function_{loop}"] = hops[loop].where
        result.targets.append(
            target(
                f"event-loop CPU per LLM-backed request, p50, {loop}",
                f"<= {TARGET_MS} ms",
                summ["p50"],
                summ["p50"] <= TARGET_MS,
            )
        )
        result.targets.append(
            target(
                f"thread hops per request, {loop}",
                "0",
                hops[loop].hops / per,
                hops[loop].hops == 0,
            )
        )
    finish(result, opts)
    return result
