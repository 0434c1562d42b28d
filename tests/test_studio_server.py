"""Integration: what Studio, Agent Chat UI, an MCP client and other agents do on the real server.

One `langgraph dev` for the module, serving the shipped langgraph.json (custom store, MCP app,
serde allowlist) over a tiny film catalogue indexed in a temporary home:

- xray and /subgraphs show chat's inner recommend nodes; a chat turn pauses inside them;
- every structured field accepts a JSON edit through the API and the run resumes on it;
- the request Agent Chat UI sends (only messages) gets a reply;
- with LLM roles, ``messages-tuple`` carries only the reply's tokens, not the roles' JSON;
- the official ``mcp`` client lists MemRec's tools and gets JSON results and tool errors;
- the store API reads the memories; langgraph.json lists every type the checkpoints hold.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from mcp.client import Client

from prompts.blocks import extract_block
from services.index import build_index
from tests.support.langgraph_dev import langgraph_dev, project_config
from tests.support.openai_server import OpenAITestServer, RecordedRequest, Reply
from tests.support.tiny_films import write_tiny_films

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    url: str
    log: Path
    dataset: str

    def log_text(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("studio-server")
    dataset = str(write_tiny_films(Path(tempfile.mkdtemp(prefix="memrec-srv-")) / "tiny-films"))
    home = tmp / "home"
    build_index(dataset, home=home)
    env = {
        "MEMREC_HOME": str(home),
        "MEMREC_DATASET": dataset,
        "MEMREC_ROLES": "offline",
        "MEMREC_AUTH": "off",  # open local mode (a local admin): tenancy is tests/test_tenancy.py
    }
    log = tmp / "server.log"
    process_env = {**os.environ, **env}
    for name in ("MEMREC_AUTH_TOKENS", "MEMREC_AUTH_TOKENS_FILE", "MEMREC_AUTH_STUDIO"):
        process_env.pop(name, None)
    with langgraph_dev(project_config(tmp, env), process_env, log, cwd=REPO) as url:
        yield Server(url, log, dataset)


async def _assistant(client: Any, graph: str) -> str:
    (found,) = await client.assistants.search(graph_id=graph, limit=1)
    return str(found["assistant_id"])


# ---------------------------------------------------------------------------------- studio


async def test_xray_and_subgraphs_show_chats_inner_nodes(server: Server) -> None:
    client = get_client(url=server.url)
    chat = await _assistant(client, "chat")
    drawn = await client.assistants.get_graph(chat, xray=True)
    ids = {node["id"] for node in drawn["nodes"]}
    assert {"recommend:curate", "recommend:synthesize", "recommend:rank"} <= ids
    subgraphs = await client.assistants.get_subgraphs(chat)
    assert "recommend" in subgraphs


async def test_recommend_json_edits_of_every_structured_field_resume(server: Server) -> None:
    client = get_client(url=server.url)
    thread = (await client.threads.create())["thread_id"]
    inp = {"user_id": "1", "candidates": ["4", "10", "15", "20"], "request": "a comedy"}
    await client.runs.wait(thread, "recommend", input=inp, interrupt_before=["rank"])
    state = await client.threads.get_state(thread)
    assert state["next"] == ["rank"]
    values = state["values"]
    facet = {**values["facets"][0], "name": "edited-facet", "confidence": 1.0}
    edits = {
        "neighbours": values["neighbours"][:1],
        "facets": [facet],
        "context": values["context"][:1],
        "usage": {"curate": {"calls": 0, "model": "edited"}},
        "candidates": ["4", "10"],
    }
    await client.threads.update_state(thread, edits, as_node="synthesize")
    out = await client.runs.wait(thread, "recommend", input=None)
    assert [f["name"] for f in out["facets"]] == ["edited-facet"]
    assert [n["ref"] for n in out["neighbours"]] == [values["neighbours"][0]["ref"]]
    assert sorted(r["item_id"] for r in out["ranking"]) == ["10", "4"]
    assert out["usage"]["curate"]["model"] == "edited"
    await client.threads.update_state(  # the output fields and feedback take JSON too
        thread,
        {"ranking": out["ranking"][:1], "feedback": [{"item_id": "10", "kind": "positive"}]},
        as_node="rank",
    )
    after = (await client.threads.get_state(thread))["values"]
    assert after["ranking"] == out["ranking"][:1] and after["feedback"][0]["item_id"] == "10"


async def test_chat_pauses_inside_recommend_takes_json_edits_and_resumes(server: Server) -> None:
    client = get_client(url=server.url)
    thread = (await client.threads.create())["thread_id"]
    inp = {"user_id": "1", "messages": [{"role": "user", "content": "a comedy"}]}
    await client.runs.wait(thread, "chat", input=inp, context={"pause_before": ["rank"]})
    state = await client.threads.get_state(thread, subgraphs=True)
    (task,) = state["tasks"]
    inner = task["state"]
    assert task["name"] == "recommend" and inner["next"] == ["rank"]
    neighbour = inner["values"]["neighbours"][0]
    facet = {**inner["values"]["facets"][0], "name": "edited-facet"}
    await client.threads.update_state(
        thread,
        {"neighbours": [neighbour], "facets": [facet]},
        as_node="synthesize",
        checkpoint=inner["checkpoint"],
    )
    out = await client.runs.wait(
        thread, "chat", command={"resume": True}, context={"pause_before": ["rank"]}
    )
    assert [f["name"] for f in out["facets"]] == ["edited-facet"]
    assert [n["ref"] for n in out["neighbours"]] == [neighbour["ref"]]
    assert "Here are my picks (Comedy):" in out["messages"][-1]["content"]
    # chat's own structured fields, edited as JSON, and the next turn reads them
    values = (await client.threads.get_state(thread))["values"]
    edits = {
        "constraints": {"include": ["Drama"], "exclude": ["Comedy"]},
        "understanding": {**values["understanding"], "request": "edited"},
        "matched_feedback": [
            {"item_id": "10", "title": "Apollo 13 (1995)", "sentiment": "positive"}
        ],
        "pending": None,
        "ranking": values["ranking"][:2],
        "usage": {"understand": {"calls": 0}},
    }
    await client.threads.update_state(thread, edits, as_node="respond")
    more = await client.runs.wait(
        thread, "chat", input={"messages": [{"role": "user", "content": "more please"}]}
    )
    assert more["messages"][-1]["content"].startswith("Here are my picks (Drama, no Comedy):")


# ---------------------------------------------------------------------------- chat front ends


def test_the_request_agent_chat_ui_sends_gets_a_reply(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        message = {
            "id": str(uuid.uuid4()),
            "type": "human",
            "content": [{"type": "text", "text": "a comedy from the 90s"}],
        }
        body = {
            "input": {"messages": [message]},
            "stream_mode": ["values", "messages-tuple", "custom"],
            "stream_subgraphs": True,
            "stream_resumable": True,
            "assistant_id": "chat",
            "on_disconnect": "continue",
        }
        with http.stream("POST", f"/threads/{thread}/runs/stream", json=body) as reply:
            assert reply.status_code == 200
            events = [line for line in reply.iter_lines() if line.startswith("event: ")]
        assert "event: error" not in events, events
        state = http.get(f"/threads/{thread}/state").json()["values"]
    assert state["user_id"] == f"guest-{thread}"
    reply = state["messages"][-1]["content"]
    assert "is new" in reply and "Here are my picks (Comedy, 1990s):" in reply


async def test_only_the_reply_streams_as_chat_messages(server: Server) -> None:
    reading = {"intent": "recommend", "request": "a comedy", "constraints": {"include": ["Comedy"]}}
    text = "Two comedies you have not seen, each with its reason."

    def handler(request: RecordedRequest) -> Reply | None:
        if request.task == "understand":
            return Reply(content=json.dumps(reading))
        if request.task == "respond":  # a reply that presents the first pick, as asked
            prompt = str(request.messages[-1].get("content", ""))
            first = json.loads((extract_block(prompt, "PICKS") or "{}").splitlines()[0])
            return Reply(content=f"{text} First, {first.get('title', '')}.")
        return None  # synthesize and rank: the test server's valid JSON

    client = get_client(url=server.url)
    with OpenAITestServer(handler) as llm:
        spec = f"openai-compatible:test-model@{llm.url}/v1"
        context = {"roles": "", "lmmem": spec, "llmrec": spec, "timeout_s": 10.0}
        thread = (await client.threads.create())["thread_id"]
        inp = {"user_id": "1", "messages": [{"role": "user", "content": "something fun"}]}
        nodes: dict[str, str] = {}
        async for part in client.runs.stream(
            thread, "chat", input=inp, context=context,
            stream_mode=["messages-tuple"], stream_subgraphs=True,
        ):  # fmt: skip
            assert part.event != "error", part.data
            if part.event.startswith("messages"):
                chunk, meta = part.data
                node = meta.get("langgraph_node", "")
                nodes[node] = nodes.get(node, "") + str(chunk.get("content") or "")
        assert {"understand", "synthesize", "rank"} <= set(llm.calls)
    assert set(nodes) == {"respond"}, nodes  # no role's JSON among the chat messages
    assert nodes["respond"].startswith(text)


# ---------------------------------------------------------------------------------- MCP


async def test_an_mcp_client_lists_tools_and_gets_json_results(server: Server) -> None:
    async with Client(f"{server.url}/mcp") as mcp:
        listed = await mcp.list_tools()
        tools = {t.name: t for t in listed.tools}
        assert set(tools) == {"recommend_items", "record_feedback", "explain_recommendation"}
        for tool in tools.values():
            assert len(tool.description or "") > 60, tool.name
            assert "user_id" in tool.input_schema["required"]
            props = tool.input_schema["properties"]
            assert all(p.get("description") for p in props.values()), tool.name
        args = {"user_id": "1", "request": "two 90s comedies"}
        result = await mcp.call_tool("recommend_items", args)
        assert not result.is_error, result
        data = json.loads(result.content[0].text)
        assert data == result.structured_content
        assert len(data["items"]) == 2 and len(result.content[0].text) < 2000
        for item in data["items"]:
            assert item["title"] and item["rationale"] and item["item_id"]
        bad = await mcp.call_tool("explain_recommendation", {"user_id": "1", "item_id": "nope"})
        assert bad.is_error and "nope" in bad.content[0].text


async def test_admin_graphs_are_not_tools_and_the_store_serves_memories(server: Server) -> None:
    client = get_client(url=server.url)
    item = await client.store.get_item(["memories", "item"], "4")
    assert item["value"]["title"] == "Heat (1995)"
    found = await client.store.search_items(["memories", "item"], query="Heat Crime", limit=2)
    assert found["items"][0]["key"] == "4"
    spaces = await client.store.list_namespaces(prefix=["memories"])
    assert {("memories", "item"), ("memories", "user")} <= {tuple(n) for n in spaces["namespaces"]}


def test_the_server_uses_the_memrec_store(server: Server) -> None:
    assert "Using custom store" in server.log_text()


def test_langgraph_json_lists_every_state_type() -> None:
    from langgraph._internal import _serde

    from graph.chat import CHECKPOINT_TYPES
    from graph.chat import graph as chat
    from graph.propagate import graph as propagate
    from graph.recommend import graph as recommend
    from graph.rules import graph as rules

    core = _serde.curated_core_allowlist()
    needed: set[tuple[str, ...]] = set()
    for compiled in (chat, recommend, propagate, rules):
        b = compiled.builder
        schemas = [b.state_schema, b.input_schema, b.output_schema]
        schemas += [n.input_schema for n in b.nodes.values()]
        needed |= _serde.build_serde_allowlist(schemas=schemas, channels=compiled.channels) - core
    config = json.loads((REPO / "langgraph.json").read_text())
    listed = {tuple(t) for t in config["checkpointer"]["serde"]["allowed_msgpack_modules"]}
    assert listed == needed
    assert {(t.__module__, t.__name__) for t in CHECKPOINT_TYPES} <= listed
