"""The chat graph's `recommend` node: rank the retrieved candidates with the recommend graph.

Built by ``make_recommend(recommend_graph)``: the chat builder hands it the compiled recommend
graph, which runs with the same run context (it streams its curate, synthesize, rank updates).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from schemas.chat_state import ChatState
from schemas.context import MemRecContext


def make_recommend(recommend_graph: Any) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The `recommend` node over ``recommend_graph`` (a compiled recommend graph)."""

    async def recommend(state: ChatState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
        """Run the recommend graph on the retrieved candidates; no candidates, no picks."""
        ctx = runtime.context or MemRecContext()
        if not state.get("candidates"):
            notes = [*(state.get("notes") or []), "I found no unseen item to suggest"]
            return {"ranking": [], "facets": [], "neighbours": [], "notes": notes}
        out = await recommend_graph.ainvoke(
            {
                "user_id": state["user_id"],
                "candidates": state["candidates"],
                "request": state.get("request"),
            },
            context=ctx,
        )
        return {
            "ranking": out.get("ranking") or [],
            "facets": out.get("facets") or [],
            "neighbours": out.get("neighbours") or [],
            "usage": out.get("usage") or {},
            "notes": [*(state.get("notes") or []), *(out.get("notes") or [])],
        }

    return recommend
