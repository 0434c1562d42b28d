"""LangChain tools over MemRec, for other agents: recommend, record feedback, explain.

``make_tools(ctx)`` binds them to one run context (dataset, store, roles). Each tool has typed
pydantic arguments and returns JSON-ready data; bad ids come back as a clear error for the agent.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from graph.background import schedule_propagation
from graph.recommend import graph
from memory_store.workspace import UnknownEntity, workspace_for
from nodes.curate import InvalidRequest
from nodes.record import record_feedback as record
from nodes.retrieve import retrieve_candidates
from schemas.chat_state import Constraints
from schemas.context import MemRecContext
from schemas.recommend_state import Feedback


class RecommendArgs(BaseModel):
    """Arguments of ``recommend_items``."""

    user_id: str = Field(description="the user to recommend for (unknown ids: cold start)")
    request: str | None = Field(default=None, description="what the user asked for, free text")
    candidates: list[str] | None = Field(
        default=None, description="item ids to rank; omit to retrieve from the whole catalog"
    )
    k: int = Field(default=5, ge=1, le=50, description="how many items to return")


class FeedbackArgs(BaseModel):
    """Arguments of ``record_feedback``."""

    user_id: str = Field(description="a user the dataset knows")
    item_id: str = Field(description="the item the user interacted with")
    kind: Literal["positive", "negative", "click"] = Field(
        default="positive", description="positive (liked), negative (disliked) or click"
    )


class ExplainArgs(BaseModel):
    """Arguments of ``explain_recommendation``."""

    user_id: str = Field(description="the user")
    item_id: str = Field(description="the item to explain")


async def _run_recommend(ctx: MemRecContext, inp: dict[str, Any]) -> dict[str, Any]:
    runnable: Any = graph  # compiled without a typed context
    return await runnable.ainvoke(inp, context=ctx)


async def recommend_items(
    ctx: MemRecContext,
    user_id: str,
    request: str | None = None,
    candidates: list[str] | None = None,
    k: int = 5,
) -> list[dict[str, Any]]:
    """The top ``k`` items for a user, each with title, score and rationale."""
    ws = await asyncio.to_thread(workspace_for, ctx)
    if candidates is None:
        found = await asyncio.to_thread(
            retrieve_candidates, ws, user_id, request, Constraints(), (), (), max(k, 20)
        )
        candidates = found.candidates
    try:
        out = await _run_recommend(
            ctx, {"user_id": user_id, "candidates": candidates, "request": request}
        )
    except InvalidRequest as err:
        raise ToolException(str(err)) from None
    return [
        {
            "item_id": r.item_id,
            "title": ws.title(ws.item_code(r.item_id)),
            "score": round(r.score, 4),
            "rationale": r.rationale,
        }
        for r in out["ranking"][:k]
    ]


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
    return {"interaction_id": events[0].interaction_id, "propagation": "scheduled"}


async def explain_recommendation(ctx: MemRecContext, user_id: str, item_id: str) -> dict[str, Any]:
    """Why an item suits a user: the rationale, the facets and the neighbours behind it."""
    ws = await asyncio.to_thread(workspace_for, ctx)
    try:
        out = await _run_recommend(ctx, {"user_id": user_id, "candidates": [item_id]})
    except InvalidRequest as err:
        raise ToolException(str(err)) from None
    ranked = out["ranking"][0]
    return {
        "item_id": item_id,
        "title": ws.title(ws.item_code(item_id)),
        "rationale": ranked.rationale,
        "evidence": ranked.evidence,
        "facets": [
            {"name": f.name, "confidence": f.confidence, "evidence": f.evidence}
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
    ) -> list[dict[str, Any]]:
        return await recommend_items(ctx, user_id, request, candidates, k)

    async def _feedback(user_id: str, item_id: str, kind: str = "positive") -> dict[str, Any]:
        return await record_feedback(ctx, user_id, item_id, kind)

    async def _explain(user_id: str, item_id: str) -> dict[str, Any]:
        return await explain_recommendation(ctx, user_id, item_id)

    specs = (
        (_recommend, "recommend_items", RecommendArgs, recommend_items.__doc__),
        (_feedback, "record_feedback", FeedbackArgs, record_feedback.__doc__),
        (_explain, "explain_recommendation", ExplainArgs, explain_recommendation.__doc__),
    )
    return [
        StructuredTool.from_function(
            coroutine=fn,
            name=name,
            description=(doc or "").strip(),
            args_schema=schema,
            handle_tool_error=True,
        )
        for fn, name, schema, doc in specs
    ]
