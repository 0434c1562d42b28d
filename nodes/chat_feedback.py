"""The chat graph's `feedback` node: record feedback from a message, propagate in background."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langgraph.runtime import Runtime

from graph.chat_state import ChatState, ResolvedFeedback
from graph.context import MemRecContext, workspace_for
from graph.state import Feedback
from memory_store.workspace import UnknownEntity, Workspace
from nodes.record import record_feedback
from nodes.roles import InteractionEvent
from nodes.tenancy import check_acting_user

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


async def feedback(state: ChatState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: record, schedule propagation (not awaited), remember likes and noes."""
    from nodes.scheduling import schedule_propagation

    ctx = runtime.context or MemRecContext()
    ws = await asyncio.to_thread(workspace_for, ctx)
    matched = state.get("matched_feedback") or []
    check_acting_user(state["user_id"])
    events, notes = await asyncio.to_thread(record_chat_feedback, ws, state["user_id"], matched)
    await schedule_propagation(ctx, events)
    liked = [f.item_id for f in matched if f.sentiment == "positive"]
    rejected = [f.item_id for f in matched if f.sentiment == "negative"]
    return {
        "recorded": [e.interaction_id for e in events],
        "liked": list(dict.fromkeys([*(state.get("liked") or []), *liked])),
        "rejected": list(dict.fromkeys([*(state.get("rejected") or []), *rejected])),
        "notes": [*(state.get("notes") or []), *notes],
    }
