"""LangChain tools over MemRec for other agents (and the MCP server): recommend, feedback, explain.

``make_tools(ctx)`` binds them to one run context (dataset, store, roles). Each tool has typed
arguments with descriptions and returns compact JSON-ready data: item ids with their titles,
scores and one-line rationales. Bad input comes back as a tool error whose message says what to
send instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from graph.background import schedule_propagation
from graph.recommend import graph
from memory_store.workspace import UnknownEntity, Workspace, workspace_for
from nodes.curate import InvalidRequest
from nodes.record import record_feedback as record
from nodes.retrieve import retrieve_candidates
from roles.catalogue_index import catalogue_index
from roles.offline_understand import read_offline
from schemas.chat_state import Constraints
from schemas.context import MemRecContext
from schemas.recommend_state import Feedback

RECOMMEND_TASK = (
    "Recommend items a user has not seen yet, best first, each with its title and a one-line "
    "reason. Give the user's id and, optionally, what they asked for in their words (genres, "
    "eras such as 'a 90s comedy', how many); or give candidate item ids to rank instead."
)
FEEDBACK_TASK = (
    "Record that a user liked (positive), disliked (negative) or clicked an item; their taste "
    "profile and their neighbours' memories are updated in the background."
)
EXPLAIN_TASK = (
    "Explain why an item suits a user: the rationale, the taste facets and the similar users "
    "and items behind it."
)


class RecommendArgs(BaseModel):
    """Arguments of recommend_items."""

    user_id: str = Field(description="the user to recommend for (an unknown id: a new user)")
    request: str | None = Field(
        default=None, description="what the user asked for, in their words, e.g. 'a 90s comedy'"
    )
    candidates: list[str] | None = Field(
        default=None, description="item ids to rank; omit to search the whole catalogue"
    )
    k: int = Field(default=5, ge=1, le=50, description="how many items to return")


class FeedbackArgs(BaseModel):
    """Arguments of record_feedback."""

    user_id: str = Field(description="a user the dataset knows")
    item_id: str = Field(description="the item the user interacted with")
    kind: Literal["positive", "negative", "click"] = Field(
        default="positive", description="positive (liked), negative (disliked) or click"
    )


class ExplainArgs(BaseModel):
    """Arguments of explain_recommendation."""

    user_id: str = Field(description="the user")
    item_id: str = Field(description="the item to explain")


async def _run_recommend(ctx: MemRecContext, inp: dict[str, Any]) -> dict[str, Any]:
    runnable: Any = graph  # compiled without a typed context
    try:
        return await runnable.ainvoke(inp, context=ctx)
    except (InvalidRequest, UnknownEntity) as err:
        raise ToolException(str(err)) from None


def _title(ws: Workspace, item_id: str) -> str:
    return ws.title(ws.item_code(item_id))


async def recommend_items(
    ctx: MemRecContext,
    user_id: str,
    request: str | None = None,
    candidates: list[str] | None = None,
    k: int = 5,
) -> dict[str, Any]:
    """The top k unseen items for a user, read from their request, with titles and reasons."""
    ws = await asyncio.to_thread(workspace_for, ctx)
    notes: list[str] = []
    if candidates is None:
        index = await asyncio.to_thread(catalogue_index, ws.dataset)
        reading = read_offline(request or "", index)
        k = reading.count or k
        found = await asyncio.to_thread(
            retrieve_candidates,
            ws,
            user_id,
            reading.request or request,
            reading.constraints or Constraints(),
            (),
            (),
            max(k, 20),
        )
        candidates, notes = found.candidates, found.notes
        if not candidates:
            return {"user_id": user_id, "items": [], "notes": ["no unseen item matches"]}
    out = await _run_recommend(
        ctx, {"user_id": user_id, "candidates": candidates, "request": request}
    )
    items = [
        {
            "item_id": r.item_id,
            "title": _title(ws, r.item_id),
            "score": round(r.score, 3),
            "rationale": r.rationale,
        }
        for r in out["ranking"][:k]
    ]
    return {"user_id": user_id, "items": items, "notes": [*notes, *(out.get("notes") or [])]}


async def record_feedback(
    ctx: MemRecContext, user_id: str, item_id: str, kind: str = "positive"
) -> dict[str, Any]:
    """Record an interaction durably and start its background propagation."""
    ws = await asyncio.to_thread(workspace_for, ctx)
    try:
        events = await asyncio.to_thread(
            record, ws, user_id, [Feedback(item_id=item_id, kind=kind)]
        )
    except UnknownEntity as err:
        raise ToolException(str(err)) from None
    await schedule_propagation(ctx, events)
    return {
        "interaction_id": events[0].interaction_id,
        "item_id": item_id,
        "title": _title(ws, item_id),
        "kind": kind,
        "propagation": "scheduled",
    }


async def explain_recommendation(ctx: MemRecContext, user_id: str, item_id: str) -> dict[str, Any]:
    """Why an item suits a user: the rationale, the facets and the neighbours behind it."""
    ws = await asyncio.to_thread(workspace_for, ctx)
    out = await _run_recommend(ctx, {"user_id": user_id, "candidates": [item_id]})
    ranked = out["ranking"][0]
    return {
        "item_id": item_id,
        "title": _title(ws, item_id),
        "rationale": ranked.rationale,
        "evidence": ranked.evidence,
        "facets": [
            {"name": f.name, "confidence": f.confidence, "evidence": f.evidence[:4]}
            for f in out.get("facets") or []
        ],
        "neighbours": [n.ref for n in out.get("neighbours") or []][:8],
        "notes": out.get("notes") or [],
    }


def make_tools(ctx: MemRecContext | None = None) -> list[BaseTool]:
    """The three tools bound to ``ctx``."""
    ctx = ctx or MemRecContext()

    async def _recommend(
        user_id: str,
        request: str | None = None,
        candidates: list[str] | None = None,
        k: int = 5,
    ) -> dict[str, Any]:
        return await recommend_items(ctx, user_id, request, candidates, k)

    async def _feedback(user_id: str, item_id: str, kind: str = "positive") -> dict[str, Any]:
        return await record_feedback(ctx, user_id, item_id, kind)

    async def _explain(user_id: str, item_id: str) -> dict[str, Any]:
        return await explain_recommendation(ctx, user_id, item_id)

    specs = (
        (_recommend, "recommend_items", RecommendArgs, RECOMMEND_TASK),
        (_feedback, "record_feedback", FeedbackArgs, FEEDBACK_TASK),
        (_explain, "explain_recommendation", ExplainArgs, EXPLAIN_TASK),
    )
    return [
        StructuredTool.from_function(
            coroutine=fn,
            name=name,
            description=task,
            args_schema=schema,
            handle_tool_error=True,
        )
        for fn, name, schema, task in specs
    ]
