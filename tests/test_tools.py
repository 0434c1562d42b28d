"""Composition: LangChain tools, an agent calling them, MCP in process, the graph as a subgraph."""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graph.background import stop_shared_workers
from graph.recommend import graph as recommend_graph
from roles.models import make_chat_model
from schemas.context import MemRecContext
from schemas.records import RankedItem
from services.tools import ExplainArgs, FeedbackArgs, RecommendArgs, make_tools
from tests.support.fixtures import workspace_fixtures
from tests.support.openai_server import OpenAITestServer, Reply
from tests.support.tiny_films import write_tiny_films

TINY = str(write_tiny_films(Path(tempfile.mkdtemp(prefix="memrec-tools-")) / "tiny-films"))
ws, ctx = workspace_fixtures(TINY)


TOOL_CALL = "TOOL_CALL "


class ToolCallingServer(OpenAITestServer):
    """The test server, plus replies that are tool calls: content 'TOOL_CALL {name, args}'."""

    def _completion(self, content: str, messages: list[dict[str, Any]], *, choices: bool = True):
        body = super()._completion(content, messages, choices=choices)
        if choices and content.startswith(TOOL_CALL):
            call = json.loads(content[len(TOOL_CALL) :])
            body["choices"][0]["message"] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
                    }
                ],
            }
            body["choices"][0]["finish_reason"] = "tool_calls"
        return body


def test_tools_have_typed_arguments(ctx) -> None:
    tools = {t.name: t for t in make_tools(ctx)}
    assert set(tools) == {"recommend_items", "record_feedback", "explain_recommendation"}
    assert tools["recommend_items"].args_schema is RecommendArgs
    assert tools["record_feedback"].args_schema is FeedbackArgs
    assert tools["explain_recommendation"].args_schema is ExplainArgs
    assert set(RecommendArgs.model_json_schema()["required"]) == {"user_id"}
    assert all(len(t.description) > 60 and "`" not in t.description for t in tools.values())


async def test_tools_recommend_explain_and_record(ws, ctx) -> None:
    tools = {t.name: t for t in make_tools(ctx)}
    out = await tools["recommend_items"].ainvoke({"user_id": "1", "request": "a 90s comedy"})
    items = out["items"]
    assert items and all(i["title"] and i["rationale"] for i in items)
    for i in items:  # the request's genre and era are applied, not ignored
        code = ws.item_code(i["item_id"])
        assert "Comedy" in ws.dataset.item_attributes[code] and "(199" in i["title"]
        assert not ws.graph.has(ws.user_code("1"), code)
    two = await tools["recommend_items"].ainvoke({"user_id": "1", "request": "two dramas"})
    assert len(two["items"]) == 2
    ranked = await tools["recommend_items"].ainvoke(
        {"user_id": "1", "candidates": ["4", "10", "15"], "k": 2}
    )
    assert len(ranked["items"]) == 2
    assert {r["item_id"] for r in ranked["items"]} <= {"4", "10", "15"}
    why = await tools["explain_recommendation"].ainvoke({"user_id": "1", "item_id": "10"})
    assert why["title"] == "Apollo 13 (1995)" and why["rationale"] and why["facets"]
    done = await tools["record_feedback"].ainvoke(
        {"user_id": "1", "item_id": items[0]["item_id"], "kind": "positive"}
    )
    assert ws.events.get_interaction(done["interaction_id"]).item_id == items[0]["item_id"]
    assert done["title"] == items[0]["title"]
    bad = await tools["record_feedback"].ainvoke({"user_id": "1", "item_id": "no-such-item"})
    assert "unknown item id 'no-such-item'" in bad  # an error the agent can read, not a crash
    await stop_shared_workers(timeout_s=20)


async def test_mcp_tools_in_process_give_json_and_tool_errors(ws, ctx, monkeypatch) -> None:
    from mcp.client import Client

    from services.mcp_app import mcp

    monkeypatch.setenv("MEMREC_DATASET", ctx.dataset)
    monkeypatch.setenv("MEMREC_HOME", ctx.home)
    async with Client(mcp) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["record_feedback"].input_schema["required"] == ["user_id", "item_id"]
        result = await client.call_tool("recommend_items", {"user_id": "1", "request": "a drama"})
        assert not result.is_error
        data = json.loads(result.content[0].text)
        assert data == result.structured_content and data["items"][0]["title"]
        bad = await client.call_tool("record_feedback", {"user_id": "1", "item_id": "nope"})
        assert bad.is_error and "unknown item id 'nope'" in bad.content[0].text
    await stop_shared_workers(timeout_s=20)


@pytest.mark.slow  # an OpenAI-compatible test server on 127.0.0.1
async def test_an_agent_calls_recommend_items_and_gets_ranked_items(ws, ctx) -> None:
    call = {"name": "recommend_items", "args": {"user_id": "1", "request": "a comedy", "k": 3}}
    with ToolCallingServer() as server:
        server.script(
            Reply(content=TOOL_CALL + json.dumps(call)), Reply(content="Try these three.")
        )
        model = make_chat_model(f"openai-compatible:test-model@{server.url}/v1")
        agent = create_agent(model, make_tools(ctx))
        out = await agent.ainvoke({"messages": [("user", "recommend me a comedy")]})
        second = server.chat_requests()[1].messages
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 1 and tool_messages[0].name == "recommend_items"
    items = json.loads(tool_messages[0].content)["items"]
    assert len(items) == 3 and all(item["rationale"] and item["title"] for item in items)
    assert out["messages"][-1].content == "Try these three."
    sent = next(m for m in second if m["role"] == "tool")  # the agent's model saw the ranking
    assert all(item["item_id"] in sent["content"] for item in items)


class ParentState(TypedDict, total=False):
    user_id: str
    candidates: list[str]
    ranking: list[RankedItem]
    summary: str


def summarise(state: ParentState) -> dict[str, str]:
    return {"summary": f"best: {state['ranking'][0].item_id}"}


async def test_the_recommend_graph_composes_as_a_subgraph(ws, ctx: MemRecContext) -> None:
    builder = StateGraph(ParentState, context_schema=MemRecContext)
    builder.add_node("recommend", recommend_graph)
    builder.add_node("summarise", summarise)
    builder.add_edge(START, "recommend")
    builder.add_edge("recommend", "summarise")
    builder.add_edge("summarise", END)
    parent = builder.compile()
    inp = {"user_id": "1", "candidates": ["4", "10", "15", "20"]}
    nodes = []
    async for ns, update in parent.astream(inp, context=ctx, stream_mode="updates", subgraphs=True):
        nodes += [f"{'/'.join(n.split(':')[0] for n in ns)}:{name}" for name in update]
    assert nodes == [
        "recommend:curate",
        "recommend:synthesize",
        "recommend:rank",
        ":recommend",
        ":summarise",
    ]
    out = await parent.ainvoke(inp, context=ctx)
    assert sorted(r.item_id for r in out["ranking"]) == sorted(inp["candidates"])
    assert out["summary"] == f"best: {out['ranking'][0].item_id}"
