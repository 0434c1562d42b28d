"""Chaos: the server's resident memory under a steady load (a soak), sampled over time.

The LangGraph dev server serves recommend requests at a fixed rate (half of them with a feedback,
so propagation runs too) for the whole duration, after a faster warm-up that fills its bounded
caches; RSS, threads and open files of the server process
are sampled every ``sample_s``. Reported: the series, the growth after the warm-up and the slope of
a least-squares line over the samples after the warm-up (MB/min).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from langgraph_sdk import get_client

from bench.chaos_server import DevServer


async def _load(
    server: DevServer,
    dataset: str,
    seconds: float,
    rate: float,
    sample_s: float,
    warmup: tuple[float, float] = (0.0, 0.0),
) -> tuple[list[dict[str, float]], int, int]:
    """Send requests for ``seconds``, sampling the server every ``sample_s``.

    ``warmup[1]`` requests per second for the first ``warmup[0]`` seconds, then ``rate``.
    """
    client = get_client(url=server.url, timeout=120)
    rng = random.Random(1)
    proc = psutil.Process(server.pid)
    series: list[dict[str, float]] = []
    tasks: set[asyncio.Task[None]] = set()
    sent = failed = 0
    users = [str(u) for u in range(1, 944)] if dataset == "ml-100k" else None

    async def one(n: int) -> None:
        nonlocal failed
        user = rng.choice(users) if users else "1"
        inp: dict[str, Any] = {"user_id": user, "request": f"something {n % 50}"}
        if n % 2 == 0:
            inp["feedback"] = [{"item_id": str(rng.randint(1, 1682)), "kind": "positive"}]
        try:
            await client.runs.wait(None, "recommend", input=inp, context={"dataset": dataset})
        except Exception:  # noqa: BLE001 - a failed request is counted, the soak goes on
            failed += 1

    start = time.monotonic()
    next_sample = start
    while time.monotonic() - start < seconds:
        task = asyncio.create_task(one(sent))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
        if time.monotonic() >= next_sample:
            series.append(_sample(server, proc, start, sent))
            next_sample += sample_s
        warming = time.monotonic() - start < warmup[0] and warmup[1] > 0
        await asyncio.sleep(1.0 / (warmup[1] if warming else rate))
    await asyncio.gather(*tasks, return_exceptions=True)
    series.append(_sample(server, proc, start, sent))
    return series, sent, failed


def _sample(server: DevServer, proc: psutil.Process, start: float, sent: int) -> dict[str, float]:
    memory = server.memory_mb()
    return {
        "t_s": round(time.monotonic() - start, 1),
        "rss_mb": round(memory["rss_mb"], 1),
        "anon_mb": round(memory["anon_mb"], 1),
        "file_mb": round(memory["file_mb"], 1),
        "threads": proc.num_threads(),
        "open_files": proc.num_fds(),
        "requests": sent,
    }


def soak(
    dataset: str,
    home: Path,
    workdir: Path,
    *,
    seconds: float,
    rate: float = 1.0,
    sample_s: float = 30.0,
    warmup_s: float = 120.0,
    warmup_rate: float = 5.0,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the soak; the series and its figures.

    The warm-up sends ``warmup_rate`` requests/s, so the server's bounded caches (facets, token
    counts, memory reads) are about full when the measurement starts; then ``rate`` per second.
    """
    server = DevServer(home, workdir, extra_env)
    server.start()
    try:
        series, sent, failed = asyncio.run(
            _load(server, dataset, seconds, rate, sample_s, (warmup_s, warmup_rate))
        )
    finally:
        server.stop()
    after = [s for s in series if s["t_s"] >= warmup_s]
    slope = anon_slope = float("nan")
    if len(after) >= 3:
        t = np.array([s["t_s"] for s in after]) / 60.0
        slope = float(np.polyfit(t, np.array([s["rss_mb"] for s in after]), 1)[0])
        anon_slope = float(np.polyfit(t, np.array([s["anon_mb"] for s in after]), 1)[0])
    return {
        "series": series,
        "requests": sent,
        "failed": failed,
        "rss_start_mb": series[0]["rss_mb"],
        "rss_after_warmup_mb": after[0]["rss_mb"] if after else None,
        "rss_end_mb": series[-1]["rss_mb"],
        "growth_after_warmup_mb": round(after[-1]["rss_mb"] - after[0]["rss_mb"], 1)
        if after
        else None,
        "slope_mb_per_min": round(slope, 2),
        "anon_slope_mb_per_min": round(anon_slope, 2),
    }
