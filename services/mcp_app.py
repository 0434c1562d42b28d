"""MCP at ``/mcp`` on the LangGraph server: MemRec's tools as a model can use them.

Mounted by :mod:`services.http_app` (langgraph.json's ``http.app``; the built-in per-assistant
MCP turned off): the tools are those of :mod:`services.tools` (recommend_items, record_feedback,
explain_recommendation), each with a task description and typed, described, required arguments;
results are compact JSON (structured content and its text) with item ids and titles; a bad call
is a tool error carrying the message. Evaluation, rules and propagation graphs are not tools.

With server auth on (``enable_custom_route_auth``), a signed-in user acts only for themself;
admins for anyone.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from langchain_core.tools import ToolException
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field
from starlette.applications import Starlette

from schemas.context import MemRecContext
from schemas.tenancy import USER_PERMISSION
from services import tools

logger = logging.getLogger(__name__)

mcp = MCPServer(
    name="memrec",
    instructions=(
        "MemRec recommends items from its catalogue with collaborative memory. Call "
        "recommend_items with the user's id and their request; record_feedback when they say "
        "what they liked; explain_recommendation to say why an item fits them."
    ),
)

UserId = Annotated[
    str, Field(description="the user to act for (a signed-in user: their own id)")
]


def _user(ctx: Context, user_id: str) -> str:
    """The user a call acts for: a signed-in user only for themself; admins name anyone."""
    request = getattr(ctx.request_context, "request", None)
    scope: dict[str, Any] = getattr(request, "scope", None) or {}
    identity = getattr(scope.get("user"), "identity", None)
    permissions = list(getattr(scope.get("auth"), "scopes", None) or [])
    if identity and USER_PERMISSION in permissions:
        if user_id != identity:
            raise ToolError(f"refused (403): you may act only for your own user_id {identity!r}")
        return str(identity)
    if not user_id:
        raise ToolError("user_id is required: the id of the user to act for")
    return user_id


async def _call(coro: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await coro
        return result
    except ToolException as err:
        raise ToolError(str(err)) from None


@mcp.tool(description=tools.RECOMMEND_TASK)
async def recommend_items(
    ctx: Context,
    user_id: UserId,
    request: Annotated[
        str | None, Field(description="what the user asked for, e.g. 'a 90s comedy, no horror'")
    ] = None,
    k: Annotated[int, Field(ge=1, le=50, description="how many items to return")] = 5,
    candidates: Annotated[
        list[str] | None, Field(description="item ids to rank instead of searching")
    ] = None,
) -> dict[str, Any]:
    """Recommend unseen items with titles and reasons."""
    user = _user(ctx, user_id)
    return await _call(tools.recommend_items(MemRecContext(), user, request, candidates, k))


@mcp.tool(description=tools.FEEDBACK_TASK)
async def record_feedback(
    ctx: Context,
    user_id: UserId,
    item_id: Annotated[str, Field(description="the item the user interacted with")],
    kind: Annotated[
        Literal["positive", "negative", "click"],
        Field(description="positive (liked), negative (disliked) or click"),
    ] = "positive",
) -> dict[str, Any]:
    """Record feedback; propagation runs in the background."""
    user = _user(ctx, user_id)
    return await _call(tools.record_feedback(MemRecContext(), user, item_id, kind))


@mcp.tool(description=tools.EXPLAIN_TASK)
async def explain_recommendation(
    ctx: Context,
    user_id: UserId,
    item_id: Annotated[str, Field(description="the item to explain")],
) -> dict[str, Any]:
    """Explain an item for a user."""
    user = _user(ctx, user_id)
    return await _call(tools.explain_recommendation(MemRecContext(), user, item_id))


app: Starlette = mcp.streamable_http_app(
    streamable_http_path="/mcp", stateless_http=True, json_response=True
)
