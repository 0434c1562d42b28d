"""The `record` node (post-response branch): write feedback durably, then schedule propagation.

The node is built by ``make_record(schedule)``: the graph builder injects how propagation is
scheduled (``graph/background.py``), so the node never imports a graph or a service.

Recording is idempotent on a request key (:func:`request_key`): the caller's ``idempotency_key``,
else the LangGraph run id (the same when the server replays a run after a restart). The ids of the
interactions a keyed request records derive from it, so a retry or a replay records nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.config import get_config
from langgraph.runtime import Runtime

from memory_store.graph import is_choice
from memory_store.interactions import keyed_interaction_id
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
    ws: Workspace, user_id: str, feedback: list[Feedback], key: str | None = None
) -> list[InteractionEvent]:
    """Validate every item first (nothing written on a bad id), then record them all.

    With a request ``key`` the ids derive from it: recording the same request again returns the
    interactions recorded the first time and writes nothing.
    """
    for fb in feedback:
        ws.item_code(fb.item_id)
    if not ws.has_user(user_id):
        raise UnknownEntity(f"unknown user id {user_id!r}: feedback needs a known user")
    return [
        record_interaction(
            ws,
            user_id,
            fb.item_id,
            fb.kind,
            interaction_id=keyed_interaction_id(key, user_id, n) if key else None,
        )
        for n, fb in enumerate(feedback)
    ]


def request_key(state: Any, node: str) -> str | None:
    """The request key of a recording node: the caller's idempotency key, else the run id.

    None outside a LangGraph run without a caller's key (a library call is not replayed). Call it
    in the node itself (it reads the run's config).
    """
    given = state.get("idempotency_key") if hasattr(state, "get") else None
    if given:
        return f"key:{given}:{node}"
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # not inside a graph run
        return None
    run_id = configurable.get("run_id")
    return f"run:{run_id}:{node}" if run_id else None


def make_record(schedule: Schedule) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The `record` node, handing what it recorded to ``schedule`` (injected by the builder)."""

    async def record(state: RecommendState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
        """LangGraph adapter: returns as soon as the events are durable; propagation runs later."""
        ctx = runtime.context or MemRecContext()
        ws = await aworkspace_for(ctx)
        feedback = [Feedback.model_validate(f) for f in state.get("feedback") or []]
        check_acting_user(state["user_id"])
        key = request_key(state, "record")
        events = await asyncio.to_thread(record_feedback, ws, state["user_id"], feedback, key)
        await schedule(ctx, events)
        return {"recorded": [e.interaction_id for e in events]}

    return record
