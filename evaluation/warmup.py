"""An agentic run's warm-up: a clone of the served workspace, validation interactions propagated.

Agentic methods run in a clone of the indexed workspace (the served store is never touched): the
evaluated users' validation interactions are recorded and propagated through the propagate graph.
The clone lives in a real store folder under the run's folder, and the run's context names that
folder as its ``home``, so every graph of the run resolves to the clone. Runs whose contexts only
differ in how they read share one warm-up (``READ_ONLY_FIELDS``). The test target never enters the
event log, the graph or a memory before ranking (``evaluation/leakage.check_no_leak``); the
clone is rebuilt from the index (``memory_store/index_copy.py``), never from the live store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from dataio.dataset import Dataset
from dataio.paths import resolve_home, store_dir
from dataio.split import Split
from evaluation.methods import READ_ONLY_FIELDS
from evaluation.results import WarmupStats
from graph.propagate import graph as propagate_graph
from memory_store.index_copy import index_copy
from memory_store.workspace import Workspace, get_workspace, register_workspace
from nodes.record import record_interaction
from roles.factory import role_specs, settings_for
from schemas.context import MemRecContext
from schemas.records import CallUsage

logger = logging.getLogger(__name__)


_WARMED: dict[str, tuple[Workspace, str, WarmupStats]] = {}


def clear_warm_cache() -> None:
    """Forget warmed workspaces (the next run warms up from scratch)."""
    for ws, _, _ in _WARMED.values():
        ws.events.close()
    _WARMED.clear()


def _warm_key(ctx: MemRecContext, ds: Dataset, home: str | Path | None, users: list[int]) -> str:
    fields = {k: v for k, v in dataclasses.asdict(ctx).items() if k not in READ_ONLY_FIELDS}
    payload = [ds.name, str(resolve_home(home)), fields, users]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def warmed_workspace(
    ctx: MemRecContext,
    ds: Dataset,
    split: Split,
    home: str | Path | None,
    users: list[int],
    run_home: Path,
) -> tuple[Workspace, str, WarmupStats]:
    """A clone of the served workspace after the warm-up, and the home the run's graphs use.

    The clone's event log lives in a store folder under ``run_home``, and the clone is the
    process's workspace for ``home=run_home``: graphs run with that home read and write the
    clone. Ranking never writes (test-time writes are off), so a warmed clone serves several runs
    with the same warm key.
    """
    warm_key = _warm_key(ctx, ds, home, users)
    if warm_key in _WARMED:
        ws, key, stats = _WARMED[warm_key]
        return ws, key, stats.model_copy(update={"reused": True})
    served = get_workspace(ctx.dataset, home=home)
    key = str(run_home.resolve())
    ws = index_copy(served, store_dir(ctx.dataset, key))  # never the live memories
    register_workspace(ws, ctx.dataset, key)
    stats = await warm_up(ws, dataclasses.replace(ctx, home=key), split, users)
    ws.graph.compact()  # similarity and ranker structures now include the warm-up
    _WARMED[warm_key] = (ws, key, stats)
    return ws, key, stats


def warm_up_width(ctx: MemRecContext) -> int:
    """Propagations in flight during the warm-up: 1 offline, the LMMem's model concurrency else.

    The offline warm-up is deterministic only one event at a time (each propagation reads what
    the previous one wrote), and it is fast; a model's answers are not reproducible anyway, so a
    model-backed warm-up keeps as many calls in flight as its endpoint takes (1 on a single-slot
    local server, more on a hosted one or vLLM).
    """
    spec = role_specs(ctx)[0]
    settings = settings_for(ctx, "lmmem", spec)
    return 1 if settings is None else max(1, settings.concurrency)


async def warm_up(ws: Workspace, ctx: MemRecContext, split: Split, users: list[int]) -> WarmupStats:
    """Record and propagate every evaluated user's validation interaction, in time order.

    Each interaction is recorded in time order; its propagation starts once fewer than
    :func:`warm_up_width` earlier ones are still running (offline: one at a time, so a resumed run
    rebuilds the same state). Every method records the interaction in the graph; what propagation
    then writes depends on the method's write switches (``nodes/load_context.write_scope``).
    """
    start = time.perf_counter()
    usage = CallUsage.model_validate({})
    rows = split.valid[split.valid["user"].isin(set(users))].sort_values(
        ["ts", "user"], kind="stable"
    )
    ids = ws.dataset
    slots = asyncio.Semaphore(warm_up_width(ctx))

    async def propagate(event: Any) -> CallUsage:
        try:
            out = await propagate_graph.ainvoke({"event": event}, context=ctx)
            return out["report"].usage
        finally:
            slots.release()

    pending: set[asyncio.Task[CallUsage]] = set()
    try:
        for user, item, ts in zip(rows["user"], rows["item"], rows["ts"], strict=True):
            await slots.acquire()
            for task in [t for t in pending if t.done()]:
                pending.discard(task)
                usage = usage.merged(task.result())  # a failed propagation stops the warm-up
            event = record_interaction(
                ws, ids.user_ids[user], ids.item_ids[item], "positive", float(ts)
            )
            pending.add(asyncio.create_task(propagate(event)))
        for task in list(pending):
            usage = usage.merged(await task)
            pending.discard(task)
    finally:
        for task in pending:
            task.cancel()
    seconds = round(time.perf_counter() - start, 3)
    logger.info("warm-up: %d validation interactions in %.1f s", len(rows), seconds)
    return WarmupStats(events=len(rows), seconds=seconds, usage=usage)
