"""Composition: LangChain tools, a ReAct agent calling them, the recommend graph as a subgraph."""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import create_react_agent
from typing_extensions import TypedDict

from graph.background import stop_shared_workers
from graph.recommend import graph as recommend_graph
from roles.models import make_chat_model
from schemas.context import MemRecContext
from schemas.records import RankedItem
from services.tools import ExplainArgs, FeedbackArgs, RecommendArgs, make_tools
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures
from tests.support.openai_server import OpenAITestServer, Reply

ws, ctx = workspace_fixtures(TINY_MOVIES)


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
    assert all(t.description for t in tools.values())


async def test_tools_recommend_explain_and_record(ws, ctx) -> None:
    tools = {t.name: t for t in make_tools(ctx)}
    items = await tools["recommend_items"].ainvoke({"user_id": "1", "request": "comedy", "k": 4})
    assert len(items) == 4 and all(i["title"] and i["rationale"] for i in items)
    assert not any(ws.graph.has(ws.user_code("1"), ws.item_code(i["item_id"])) for i in items)
    ranked = await tools["recommend_items"].ainvoke(
        {"user_id": "1", "candidates": ["50", "81", "100"], "k": 2}
    )
    assert len(ranked) == 2 and {r["item_id"] for r in ranked} <= {"50", "81", "100"}
    why = await tools["explain_recommendation"].ainvoke({"user_id": "1", "item_id": "50"})
    assert why["title"] == ws.title(ws.item_code("50")) and why["rationale"] and why["facets"]
    done = await tools["record_feedback"].ainvoke(
        {"user_id": "1", "item_id": items[0]["item_id"], "kind": "positive"}
    )
    assert ws.events.get_interaction(done["interaction_id"]).item_id == items[0]["item_id"]
    bad = await tools["record_feedback"].ainvoke({"user_id": "1", "item_id": "no-such-item"})
    assert "unknown item id 'no-such-item'" in bad  # an error the agent can read, not a crash
    await stop_shared_workers(timeout_s=20)


@pytest.mark.slow  # an OpenAI-compatible test server on 127.0.0.1
async def test_a_react_agent_calls_recommend_items_and_gets_ranked_items(ws, ctx) -> None:
    call = {"name": "recommend_items", "args": {"user_id": "1", "request": "a comedy", "k": 3}}
    with ToolCallingServer() as server:
        server.script(
            Reply(content=TOOL_CALL + json.dumps(call)), Reply(content="Try these three.")
        )
        model = make_chat_model(f"openai-compatible:test-model@{server.url}/v1")
        agent = create_react_agent(model, make_tools(ctx))
        out = await agent.ainvoke({"messages": [("user", "recommend me a comedy")]})
        second = server.chat_requests()[1].messages
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 1 and tool_messages[0].name == "recommend_items"
    items = json.loads(tool_messages[0].content)
    assert len(items) == 3 and all(item["rationale"] for item in items)
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
    inp = {"user_id": "1", "candidates": ["50", "81", "100", "58"]}
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
