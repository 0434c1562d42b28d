"""The chat graph's `feedback` node: record feedback from a message, propagate in background.

Built by ``make_feedback(schedule)``; the chat builder injects the scheduling (as for `record`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from memory_store.workspace import UnknownEntity, Workspace, workspace_for
from nodes.record import Schedule, record_feedback
from schemas.chat_state import ChatState, ResolvedFeedback
from schemas.context import MemRecContext
from schemas.recommend_state import Feedback
from schemas.records import InteractionEvent
from schemas.tenancy import check_acting_user

logger = logging.getLogger(__name__)


def record_chat_feedback(
    ws: Workspace, user_id: str, feedback: list[ResolvedFeedback]
) -> tuple[list[InteractionEvent], list[str]]:
    """Record matched feedback durably; a user the dataset does not know gets a note instead."""
    if not feedback:
        return [], []
    if not ws.has_user(user_id):
        return [], [
            f"user id {user_id!r} is not in the {ws.name} data, so I keep your feedback for this "
            "conversation only (it is not saved)"
        ]
    kinds = [Feedback(item_id=f.item_id, kind=f.sentiment) for f in feedback]
    try:
        return record_feedback(ws, user_id, kinds), []
    except UnknownEntity as err:  # the catalog changed under us: say so, keep the state valid
        logger.warning("chat feedback not recorded: %s", err)
        return [], [f"I could not save that feedback: {err}"]


def make_feedback(schedule: Schedule) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The chat `feedback` node, handing what it recorded to ``schedule`` (the builder's)."""

    async def feedback(state: ChatState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
        """LangGraph adapter: record, schedule propagation (not awaited), note likes and noes."""
        ctx = runtime.context or MemRecContext()
        ws = await asyncio.to_thread(workspace_for, ctx)
        matched = state.get("matched_feedback") or []
        check_acting_user(state["user_id"])
        events, notes = await asyncio.to_thread(record_chat_feedback, ws, state["user_id"], matched)
        await schedule(ctx, events)
        liked = [f.item_id for f in matched if f.sentiment == "positive"]
        rejected = [f.item_id for f in matched if f.sentiment == "negative"]
        return {
            "recorded": [e.interaction_id for e in events],
            "liked": list(dict.fromkeys([*(state.get("liked") or []), *liked])),
            "rejected": list(dict.fromkeys([*(state.get("rejected") or []), *rejected])),
            "notes": notes,
        }

    return feedback
