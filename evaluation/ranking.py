"""Ranking the evaluated users of a run through the recommend graph, with bounded concurrency.

Test-time memory writes are off, so ranking only reads and the order of users does not matter.
A user's request from the dataset (``requests.csv``, InstructRec's instruction) is passed along.
Any failure of any node becomes a counted miss, never a dropped user or a dead run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from dataio.candidates import CandidateFile
from evaluation.metrics import target_rank
from evaluation.results import UserResult
from graph.recommend import graph as recommend_graph
from memory_store.workspace import Workspace
from schemas.context import MemRecContext
from schemas.records import CallUsage

logger = logging.getLogger(__name__)


def _recommend_graph() -> Any:
    """The compiled recommend graph (a seam: tests substitute a failing one)."""
    return recommend_graph


async def rank_one(
    ctx: MemRecContext, ws: Workspace, user: int, cands: list[int], target: int
) -> UserResult:
    """Rank one user's test candidates; any failure or non-permutation is a recorded miss."""
    ids = ws.dataset
    user_id = ids.user_ids[user]
    cand_ids = [ids.item_ids[i] for i in cands]
    request = ids.requests.get(user_id)  # the dataset's own request (InstructRec instruction)
    start = time.perf_counter()
    try:
        out = await _recommend_graph().ainvoke(
            {"user_id": user_id, "candidates": cand_ids, "request": request}, context=ctx
        )
        ranked = [_item_id(r) for r in out.get("ranking") or []]
        usage = {n: CallUsage.model_validate(u) for n, u in (out.get("usage") or {}).items()}
    # Any failure of any node must become a counted miss, never a dropped user or a dead run;
    # it is logged and kept in the result.
    except Exception as exc:
        logger.warning("user %s failed: %s: %s", user_id, type(exc).__name__, exc)
        return _failed(user_id, f"{type(exc).__name__}: {exc}", start)
    if sorted(ranked) != sorted(cand_ids):
        return _failed(user_id, f"not a permutation of the candidates: {ranked[:12]}", start)
    return UserResult(
        user_id=user_id,
        rank=target_rank(ranked, ids.item_ids[target]),
        latency_ms=(time.perf_counter() - start) * 1000.0,
        usage=usage,
    )


def _item_id(ranked: Any) -> str:
    return str(ranked["item_id"] if isinstance(ranked, dict) else ranked.item_id)


def _failed(user_id: str, error: str, start: float) -> UserResult:
    latency = (time.perf_counter() - start) * 1000.0
    return UserResult(user_id=user_id, rank=0, failed=True, error=error, latency_ms=latency)


async def rank_users(
    ctx: MemRecContext,
    ws: Workspace,
    users: list[int],
    cands: CandidateFile,
    targets: dict[int, int],
    partial: Path,
    concurrency: int,
    progress: bool,
) -> dict[int, UserResult]:
    """Rank ``users``, at most ``concurrency`` requests in flight; append each to ``partial``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    gate = asyncio.Semaphore(concurrency)
    results: dict[int, UserResult] = {}
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar, partial.open("a") as sink:
        task = bar.add_task(f"ranking {ctx.dataset}", total=len(users))

        async def one(user: int) -> None:
            async with gate:
                result = await rank_one(ctx, ws, user, cands.users[user], targets[user])
            results[user] = result
            sink.write(result.model_dump_json() + "\n")
            sink.flush()
            bar.advance(task)

        tasks = [asyncio.create_task(one(u)) for u in users]
        try:
            await asyncio.gather(*tasks)
        finally:  # a crash stops the run: nothing more is ranked or appended
            for pending in tasks:
                pending.cancel()
    return results
