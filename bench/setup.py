"""Shared set-up: index a dataset once under the benchmark home, open it, build run contexts."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from bench.common import BenchOptions
from dataio.paths import store_dir
from memory_store.workspace import INDEX_MARKER, Workspace, get_workspace
from schemas.context import MemRecContext
from services.index import build_index

log = logging.getLogger(__name__)


class Indexed(BaseModel):
    """An index the benchmark made sure of, and what it cost if it had to build it."""

    dataset: str
    built_now: bool
    seconds: float
    users: int
    items: int
    train_interactions: int


def ensure_index(dataset: str, opts: BenchOptions) -> Indexed:
    """Index ``dataset`` under the benchmark home unless it is already indexed (timed)."""
    already = (store_dir(dataset, opts.home) / INDEX_MARKER).exists()
    started = time.perf_counter()
    if not already:
        log.warning("indexing %s under %s (first run only)", dataset, opts.home)
    report = build_index(dataset, data_dir=opts.data_dir, home=opts.home)
    return Indexed(
        dataset=dataset,
        built_now=not already,
        seconds=round(time.perf_counter() - started, 2),
        users=report.users,
        items=report.items,
        train_interactions=report.train_interactions,
    )


def workspace(dataset: str, opts: BenchOptions) -> Workspace:
    """The process-wide workspace the graphs will find for ``context(dataset, opts)``."""
    ws = get_workspace(dataset, home=str(opts.home))
    ws.warm.wait(timeout=120)  # measure the served steady state, not the cache warm-up
    return ws


def context(dataset: str, home: Path | str, model_spec: str = "offline") -> MemRecContext:
    """A run context for ``dataset`` with both roles on ``model_spec`` (``offline`` or a server)."""
    return MemRecContext(
        dataset=dataset,
        home=str(home),
        chroma_url=None,
        roles="offline",
        lmmem=model_spec,
        llmrec=model_spec,
    )


def sample_users(ws: Workspace, n: int, seed: int = 0, skip: int = 0) -> list[str]:
    """``n`` seeded users that have a benchmark candidate list, after skipping ``skip`` of them."""
    codes = sorted(ws.benchmark_candidates("test", 10, 0))
    order = np.random.default_rng(seed).permutation(len(codes))
    picked = [codes[j] for j in order[skip : skip + n]]
    if len(picked) < n:
        raise ValueError(
            f"{ws.name} has {len(codes)} users with candidates; asked for {n} after {skip}"
        )
    return [ws.dataset.user_ids[c] for c in picked]
