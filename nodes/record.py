"""The `record` node (post-response branch): write feedback durably, then schedule propagation.

The node is built by ``make_record(schedule)``: the graph builder injects how propagation is
scheduled (``graph/background.py``), so the node never imports a graph or a service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from memory_store.graph import is_choice
from memory_store.workspace import UnknownEntity, Workspace, aworkspace_for
from schemas.context import MemRecContext
from schemas.recommend_state import Feedback, RecommendState
from schemas.records import InteractionEvent
from schemas.tenancy import check_acting_user

# Hands recorded interactions to background propagation; never waits for it.
Schedule = Callable[[MemRecContext, list[InteractionEvent]], Awaitable[None]]


def record_interaction(
    ws: Workspace,
    user_id: str,
    item_id: str,
    kind: str = "positive",
    ts: float | None = None,
    interaction_id: str | None = None,
) -> InteractionEvent:
    """Record one interaction and its propagation job in one transaction, then append the graph.

    Unknown user or item ids raise UnknownEntity and write nothing.
    """
    if user_id in ws.deleted:
        raise UnknownEntity(f"user {user_id!r} was deleted: nothing is recorded for them")
    user = ws.user_code(user_id)
    item = ws.item_code(item_id)
    event = ws.events.record_interaction(
        user_id, item_id, kind=kind, ts=ts or time.time(), interaction_id=interaction_id
    )
    with ws.lock:  # a dislike is no co-choice: it only stays out of the user's suggestions
        if is_choice(kind):
            ws.graph.append(user, item, event.ts)
        else:
            ws.graph.reject(user, item)
    return event


def record_feedback(
    ws: Workspace, user_id: str, feedback: list[Feedback]
) -> list[InteractionEvent]:
    """Validate every item first (nothing written on a bad id), then record them all."""
    for fb in feedback:
        ws.item_code(fb.item_id)
    if not ws.has_user(user_id):
        raise UnknownEntity(f"unknown user id {user_id!r}: feedback needs a known user")
    return [record_interaction(ws, user_id, fb.item_id, fb.kind) for fb in feedback]


def make_record(schedule: Schedule) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The `record` node, handing what it recorded to ``schedule`` (injected by the builder)."""

    async def record(state: RecommendState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
        """LangGraph adapter: returns as soon as the events are durable; propagation runs later."""
        ctx = runtime.context or MemRecContext()
        ws = await aworkspace_for(ctx)
        feedback = [Feedback.model_validate(f) for f in state.get("feedback") or []]
        check_acting_user(state["user_id"])
        events = await asyncio.to_thread(record_feedback, ws, state["user_id"], feedback)
        await schedule(ctx, events)
        return {"recorded": [e.interaction_id for e in events]}

    return record
