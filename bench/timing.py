"""Instruments for measuring our own time: model HTTP round trips and per-node wall time.

``HttpClock`` wraps the model client's transport (``roles.models.PerLoopTransport``) and adds up
the wall time of every HTTP round trip (request sent -> response headers; the test server's small
JSON bodies arrive with the headers). Subtracting it from a node's wall time leaves our own work:
prompt rendering, parsing, validation, memory reads, LangChain and the openai client's own code.

``reference_ms()`` times a fixed CPU workload (pure Python plus numpy) in the same run, so a figure
measured on a shared, loaded machine can be read as a ratio to it (``x_ref``) beside its absolute
value.

``timed_recommend_graph()`` compiles the recommend graph from ``graph.recommend``'s own builder with
each node function wrapped to record its wall time, so the wiring is the production wiring.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import io
import json
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from langgraph.graph.state import CompiledStateGraph

import graph.recommend as recommend_module
from roles.models import PerLoopTransport

NODES = ("curate", "synthesize", "rank", "record")


def _reference_once() -> None:
    """A fixed mix of what MemRec spends its CPU on: dicts, strings, JSON, small numpy work."""
    rng = np.random.default_rng(0)
    words = [f"w{n % 977}:{n}" for n in range(20_000)]
    counts: dict[str, int] = {}
    for w in words:
        key = w.split(":", 1)[0]
        counts[key] = counts.get(key, 0) + 1
    rows = [{"id": n, "text": " ".join(words[n : n + 8]), "score": n / 7} for n in range(2_000)]
    json.loads(json.dumps(rows))
    sorted(words, key=lambda w: (len(w), w))
    a = rng.standard_normal((120, 120))
    for _ in range(10):
        a = np.tanh(a @ a.T / 120.0)
    np.argsort(rng.standard_normal(100_000))


def reference_ms(repeats: int = 5) -> float:
    """CPU milliseconds of the fixed reference workload (median of ``repeats`` runs)."""
    _reference_once()  # warm caches and allocator
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        _reference_once()
        samples.append((time.process_time() - started) * 1000.0)
    return round(statistics.median(samples), 2)


class HttpClock:
    """Total seconds spent in model HTTP round trips since the last ``reset``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def reset(self) -> None:
        """Start a new measurement."""
        self.seconds = 0.0
        self.calls = 0


@contextmanager
def http_clock() -> Iterator[HttpClock]:
    """Patch the model transport to time every round trip (restored on exit)."""
    clock = HttpClock()
    original = PerLoopTransport.handle_async_request

    async def timed(self: PerLoopTransport, request: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(self, request)
        finally:
            clock.seconds += time.perf_counter() - started
            clock.calls += 1

    PerLoopTransport.handle_async_request = timed  # type: ignore[method-assign]
    try:
        yield clock
    finally:
        PerLoopTransport.handle_async_request = original  # type: ignore[method-assign]


class NodeClock:
    """Wall time, event-loop thread CPU and model HTTP time per node for the request measured."""

    def __init__(self, http: HttpClock | None = None) -> None:
        self.http = http
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.http_s: dict[str, float] = {}

    def reset(self) -> None:
        """Start a new request."""
        self.wall.clear()
        self.cpu.clear()
        self.http_s.clear()

    def cpu_ms(self) -> dict[str, float]:
        """Per node: CPU time of the event-loop thread while the node ran, in ms."""
        return {n: s * 1000.0 for n, s in self.cpu.items()}

    def own_ms(self) -> dict[str, float]:
        """Per node: wall time minus model HTTP time, in ms."""
        return {n: (self.wall[n] - self.http_s.get(n, 0.0)) * 1000.0 for n in self.wall}


def _timed_node(
    name: str, fn: Callable[..., Awaitable[dict[str, Any]]], clock: NodeClock
) -> Callable[..., Awaitable[dict[str, Any]]]:
    @functools.wraps(fn)
    async def node(state: Any, runtime: Any) -> dict[str, Any]:
        http_before = clock.http.seconds if clock.http else 0.0
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return await fn(state, runtime)
        finally:
            clock.wall[name] = clock.wall.get(name, 0.0) + time.perf_counter() - started
            clock.cpu[name] = clock.cpu.get(name, 0.0) + time.thread_time() - cpu
            if clock.http:
                spent = clock.http.seconds - http_before
                clock.http_s[name] = clock.http_s.get(name, 0.0) + spent

    return node


def timed_recommend_graph(clock: NodeClock) -> CompiledStateGraph:
    """The production recommend graph with every node timed into ``clock``.

    Only valid for one request at a time (the clock is shared).
    """
    plain = [name for name in NODES if name != "record"]  # record is built by make_record
    originals: dict[str, Any] = {name: getattr(recommend_module, name) for name in plain}
    originals["make_record"] = make_record = recommend_module.make_record
    try:
        for name in plain:
            setattr(recommend_module, name, _timed_node(name, originals[name], clock))
        recommend_module.make_record = lambda schedule: _timed_node(  # type: ignore[assignment]
            "record", make_record(schedule), clock
        )
        return recommend_module.build_recommend_graph().compile(name="recommend-timed")
    finally:
        for name, fn in originals.items():
            setattr(recommend_module, name, fn)


def cpu_profile(
    make: Callable[[], Coroutine[Any, Any, Any]], per: int, top: int = 15
) -> list[dict[str, Any]]:
    """Run ``make()`` under a CPU-time cProfile; the top functions by own time, per unit of work.

    Only the event-loop thread is profiled (work sent to threads shows as waiting).
    """
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    asyncio.run(make())
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (file, line, func), (_, calls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((own, cum, calls, f"{file.split('site-packages/')[-1]}:{line}:{func}"))
    rows.sort(reverse=True)
    n = max(1, per)
    return [
        {
            "function": name,
            "own_cpu_ms": round(own * 1000 / n, 3),
            "cum_cpu_ms": round(cum * 1000 / n, 3),
            "calls": round(calls / n, 1),
        }
        for own, cum, calls, name in rows[:top]
    ]
