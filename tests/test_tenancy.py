"""Hostile-client suite: user "1" (alice) attacks user "2" (bob) on the real `langgraph dev` server.

One server with the shipped langgraph.json (auth, http app) and a token table of two users and an
admin, over a private copy of the indexed ml-100k store. Bob first does what a user does (a
recommendation, a chat with a code word, a run paused before `rank`, a store item). Then every
attack vector below runs with alice's token, and each one must

- be refused (403 / 404, or the refusal a protocol uses: 409 for a taken thread id, a tool error
  over MCP, a JSON-RPC error over A2A),
- leak nothing: no response alice gets carries bob's memory text, his chat code word or his store
  item (a cross-tenant read),
- change nothing of bob's: his fingerprint (memory rows and their write log in Chroma's file, his
  event-log rows, and the raw JSON of his threads, states, histories, runs, crons, owned-thread
  list and store items) is byte-identical before and after (a cross-tenant write).

Beside the vectors: the owner resumes a paused run (it continues, with their edit), Agent Chat UI's
messages-only input runs as the caller, both token headers work, and background propagation runs
as the server's internal identity while users cannot start propagate runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from memory_store.events import EventLog
from schemas.tenancy import WITHHELD
from tests.support.fixtures import copy_store, data_dir
from tests.support.langgraph_dev import langgraph_dev, project_config
from tests.support.tenancy import (
    ADMIN,
    ALICE,
    ALICE_ID,
    BOB,
    BOB_ID,
    DATASET,
    TOKENS,
    Tenant,
    changed_parts,
    client,
    memory_text,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CODE_WORD = "zebra-canary-7731"
STORE_SECRET = "bob-store-canary-5519"
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@dataclass
class World:
    """The running server, the three clients and what bob owns."""

    url: str
    log: Path
    store: Path
    alice: httpx.Client
    bob: httpx.Client
    admin: httpx.Client
    victim: Tenant
    bob_thread: str = ""
    bob_chat: str = ""
    bob_paused: str = ""
    bob_run: str = ""
    bob_checkpoint: str = ""
    alice_thread: str = ""
    preset: str = ""
    canaries: list[str] = field(default_factory=list)

    def fingerprint(self) -> dict:
        return self.victim.fingerprint(self.admin)

    def log_text(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace"))


def _run(c: httpx.Client, thread: str | None, body: dict) -> httpx.Response:
    path = f"/threads/{thread}/runs/wait" if thread else "/runs/wait"
    return c.post(path, json=body)


def _new_thread(c: httpx.Client) -> str:
    made = c.post("/threads", json={})
    assert made.status_code == 200, made.text
    return made.json()["thread_id"]


def _setup(w: World) -> World:
    """Bob's ordinary use of the server, then alice's own thread and an admin preset."""
    bob = w.bob
    w.bob_thread = _new_thread(bob)
    done = _run(bob, w.bob_thread, {"assistant_id": "recommend", "input": {"user_id": BOB_ID}})
    assert done.status_code == 200, done.text
    # bob's top pick and first curated neighbour with their scores, as the server writes them:
    # in an answer alice gets, they mean a ranking made from bob's data
    for pattern in (
        r'"ranking":\[\{("item_id":"[^"]+","score":[-0-9.e]+)',
        r'"neighbours":\[\{("ref":"[^"]+","kind":"\w+","score":[-0-9.e]+)',
    ):
        found = re.search(pattern, done.text)
        assert found, done.text[:300]
        w.canaries.append(found.group(1))
    w.bob_chat = _new_thread(bob)
    text = f"a 90s comedy please, code word {CODE_WORD}"
    chat = {"user_id": BOB_ID, "messages": [{"role": "user", "content": text}]}
    done = _run(bob, w.bob_chat, {"assistant_id": "chat", "input": chat})
    assert done.status_code == 200, done.text
    w.bob_paused = _new_thread(bob)
    paused = _run(
        bob,
        w.bob_paused,
        {"assistant_id": "recommend", "input": {"user_id": BOB_ID}, "interrupt_before": ["rank"]},
    )
    assert paused.status_code == 200, paused.text
    assert bob.get(f"/threads/{w.bob_paused}").json()["status"] == "interrupted"
    put = bob.put(
        "/store/items",
        json={"namespace": [BOB_ID, "notes"], "key": "k", "value": {"secret": STORE_SECRET}},
    )
    assert put.status_code == 204, put.text
    w.bob_run = bob.get(f"/threads/{w.bob_thread}/runs").json()[0]["run_id"]
    w.bob_checkpoint = bob.get(f"/threads/{w.bob_thread}/state").json()["checkpoint"][
        "checkpoint_id"
    ]
    w.victim.threads = [w.bob_thread, w.bob_chat, w.bob_paused]
    w.alice_thread = _new_thread(w.alice)
    done = _run(w.alice, w.alice_thread, {"assistant_id": "recommend", "input": {"user_id": "1"}})
    assert done.status_code == 200, done.text
    preset = w.admin.post(
        "/assistants",
        json={"graph_id": "recommend", "name": "ops-preset", "context": {"home": str(w.store)}},
    )
    assert preset.status_code == 200, preset.text
    w.preset = preset.json()["assistant_id"]
    w.canaries += [memory_text(w.store, BOB_ID), CODE_WORD, STORE_SECRET]
    return w


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tenancy")
    home = copy_store(tmp / "home")
    settings = {
        "MEMREC_HOME": str(home),
        "MEMREC_DATA_DIR": str(data_dir()),
        "MEMREC_ROLES": "offline",
    }
    env = {**os.environ, **settings, "MEMREC_AUTH_TOKENS": json.dumps(TOKENS)}
    for name in ("MEMREC_AUTH", "MEMREC_AUTH_STUDIO", "MEMREC_AUTH_TOKENS_FILE"):
        env.pop(name, None)
    log = tmp / "server.log"
    with langgraph_dev(project_config(tmp, settings), env, log, cwd=REPO) as url:
        store = home / "stores" / DATASET
        w = World(
            url=url,
            log=log,
            store=store,
            alice=client(url, ALICE),
            bob=client(url, BOB),
            admin=client(url, ADMIN),
            victim=Tenant(BOB_ID, store),
        )
        yield _setup(w)


# ---------------------------------------------------------------- the attack vectors


def _mcp(c: httpx.Client, name: str, arguments: dict, **params: object) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, **params},
    }
    return c.post("/mcp", json=body, headers=MCP_HEADERS)


def _a2a(c: httpx.Client, assistant: str, method: str, params: dict) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 9, "method": method, "params": params}
    return c.post(f"/a2a/{assistant}", json=body, headers=MCP_HEADERS)


def _assistant_id(w: World, graph: str) -> str:
    found = w.admin.post("/assistants/search", json={"graph_id": graph, "limit": 100}).json()
    return next(a["assistant_id"] for a in found if a["metadata"].get("created_by") == "system")


def _then_run_own(w: World, first: httpx.Response, body: dict) -> list[httpx.Response]:
    """After an attempted state injection on alice's thread: run on it and read it back."""
    after = _run(w.alice, w.alice_thread, body)
    return [first, after, w.alice.get(f"/threads/{w.alice_thread}/state")]


def _inject_state(w: World, values: dict, as_node: str, then: dict) -> list[httpx.Response]:
    first = w.alice.post(
        f"/threads/{w.alice_thread}/state", json={"values": values, "as_node": as_node}
    )
    return _then_run_own(w, first, then)


def _supersteps_thread(w: World) -> list[httpx.Response]:
    body = {
        "metadata": {"graph_id": "recommend"},
        "supersteps": [{"updates": [{"values": {"user_id": BOB_ID}, "as_node": "__input__"}]}],
    }
    made = w.alice.post("/threads", json=body)
    out = [made]
    if made.status_code == 200:
        tid = made.json()["thread_id"]
        out.append(_run(w.alice, tid, {"assistant_id": "recommend", "input": None}))
        out.append(w.alice.get(f"/threads/{tid}/state"))
    return out


def _v2_stream(w: World) -> list[httpx.Response]:
    body = {"channels": ["values", "messages", "updates"]}
    try:
        got = w.alice.post(f"/threads/{w.bob_chat}/stream/events", json=body, timeout=5)
    except httpx.ReadTimeout:
        got = httpx.Response(599, text="stream held open without events")
    return [got]


Attack = Callable[[World], list[httpx.Response]]


@dataclass(frozen=True)
class Vector:
    """One attack: what alice sends, and which answers count as a refusal."""

    name: str
    attack: Attack
    refused: tuple[int, ...] = (403, 404)
    check: Callable[[httpx.Response], bool] | None = None  # a refusal that is not a status


def _mcp_tool_error(response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    result = response.json().get("result") or {}
    text = (result.get("content") or [{}])[0].get("text") or ""
    return bool(result.get("isError")) and "refused (403): " in text


def _mcp_unknown_tool(response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    body = response.json()
    result = body.get("result") or {}
    text = (result.get("content") or [{}])[0].get("text") or str(body.get("error") or "")
    return (bool(result.get("isError")) or "error" in body) and "propagate" in text


def _sse_refusal(response: httpx.Response) -> bool:
    """A stream endpoint refuses after it started: one error event saying 404."""
    if response.status_code in (403, 404):
        return True
    text = response.text.lstrip()
    return response.status_code == 200 and text.startswith("event: error") and "404" in text


def _jsonrpc_error(response: httpx.Response) -> bool:
    if response.status_code in (403, 404):
        return True
    try:
        data = response.json()
    except ValueError:
        return False
    result = data.get("result") if isinstance(data, dict) else None
    state = ((result or {}).get("status") or {}).get("state") if isinstance(result, dict) else None
    return "error" in data or state in ("failed", "rejected", "TASK_STATE_FAILED")


NEIGHBOUR_B = [{"ref": f"user:{BOB_ID}", "kind": "user", "score": 9.0}]
TWELVE_MONKEYS = "I did not like Twelve Monkeys"

VECTORS: list[Vector] = [
    # runs: input, command (update / goto / resume), context and config
    Vector(
        "run input with bob's user_id",
        lambda w: [
            _run(w.alice, None, {"assistant_id": "recommend", "input": {"user_id": BOB_ID}})
        ],
    ),
    Vector(
        "command update+goto on recommend, own thread",
        lambda w: [
            _run(
                w.alice,
                w.alice_thread,
                {
                    "assistant_id": "recommend",
                    "command": {"update": {"user_id": BOB_ID}, "goto": "curate"},
                },
            ),
            w.alice.get(f"/threads/{w.alice_thread}/state"),
        ],
    ),
    Vector(
        "command update+goto on recommend, no thread",
        lambda w: [
            _run(
                w.alice,
                None,
                {
                    "assistant_id": "recommend",
                    "command": {"update": {"user_id": BOB_ID}, "goto": "curate"},
                },
            )
        ],
    ),
    Vector(
        "command update on chat writes bob's feedback",
        lambda w: [
            _run(
                w.alice,
                _new_thread(w.alice),
                {
                    "assistant_id": "chat",
                    "command": {
                        "update": {
                            "user_id": BOB_ID,
                            "messages": [{"role": "user", "content": TWELVE_MONKEYS}],
                        },
                        "goto": "understand",
                    },
                },
            )
        ],
    ),
    Vector(
        "command update injects bob as a neighbour",
        lambda w: [
            _run(
                w.alice,
                w.alice_thread,
                {
                    "assistant_id": "recommend",
                    "command": {"update": {"neighbours": NEIGHBOUR_B}, "goto": "synthesize"},
                },
            ),
            w.alice.get(f"/threads/{w.alice_thread}/state"),
        ],
    ),
    Vector(
        "command goto Send with bob's state",
        lambda w: [
            _run(
                w.alice,
                w.alice_thread,
                {
                    "assistant_id": "recommend",
                    "command": {"goto": {"node": "curate", "input": {"user_id": BOB_ID}}},
                },
            ),
            w.alice.get(f"/threads/{w.alice_thread}/state"),
        ],
    ),
    Vector(
        "command resume on bob's paused thread",
        lambda w: [
            _run(w.alice, w.bob_paused, {"assistant_id": "recommend", "command": {"resume": "go"}})
        ],
    ),
    Vector(
        "continue bob's paused thread with input null",
        lambda w: [_run(w.alice, w.bob_paused, {"assistant_id": "recommend", "input": None})],
    ),
    Vector(
        "run on bob's thread",
        lambda w: [
            _run(w.alice, w.bob_thread, {"assistant_id": "recommend", "input": {"user_id": "1"}})
        ],
    ),
    Vector(
        "run on bob's thread with if_not_exists=create",
        lambda w: [
            _run(
                w.alice,
                w.bob_thread,
                {"assistant_id": "recommend", "input": {"user_id": "1"}, "if_not_exists": "create"},
            )
        ],
    ),
    Vector(
        "stream a run on bob's chat thread",
        lambda w: [
            w.alice.post(
                f"/threads/{w.bob_chat}/runs/stream",
                json={
                    "assistant_id": "chat",
                    "input": {"messages": [{"role": "user", "content": "hi"}]},
                    "stream_mode": ["values"],
                },
            )
        ],
    ),
    Vector(
        "batch of runs for bob",
        lambda w: [
            w.alice.post(
                "/runs/batch", json=[{"assistant_id": "recommend", "input": {"user_id": BOB_ID}}]
            )
        ],
    ),
    Vector(
        "stateless stream for bob",
        lambda w: [
            w.alice.post(
                "/runs/stream", json={"assistant_id": "recommend", "input": {"user_id": BOB_ID}}
            )
        ],
    ),
    Vector(
        "fork from bob's checkpoint (checkpoint.thread_id)",
        lambda w: [
            _run(
                w.alice,
                w.alice_thread,
                {
                    "assistant_id": "recommend",
                    "input": None,
                    "checkpoint": {
                        "thread_id": w.bob_thread,
                        "checkpoint_ns": "",
                        "checkpoint_id": w.bob_checkpoint,
                    },
                },
            ),
            w.alice.get(f"/threads/{w.alice_thread}/state"),
        ],
    ),
    Vector(
        "config.configurable.thread_id of bob",
        lambda w: [
            _run(
                w.alice,
                None,
                {
                    "assistant_id": "recommend",
                    "input": {"user_id": "1"},
                    "config": {"configurable": {"thread_id": w.bob_thread}},
                },
            )
        ],
    ),
    Vector(
        "context redirects the store (home)",
        lambda w: [
            _run(
                w.alice,
                None,
                {
                    "assistant_id": "recommend",
                    "input": {"user_id": "1"},
                    "context": {"home": "/tmp/elsewhere"},
                },
            )
        ],
    ),
    Vector(
        "configurable points at another Chroma",
        lambda w: [
            _run(
                w.alice,
                None,
                {
                    "assistant_id": "recommend",
                    "input": {"user_id": "1"},
                    "config": {"configurable": {"chroma_url": "http://127.0.0.1:9/"}},
                },
            )
        ],
    ),
    Vector(
        "context widens propagation fan-out",
        lambda w: [
            _run(
                w.alice,
                None,
                {
                    "assistant_id": "recommend",
                    "input": {"user_id": "1", "feedback": [{"item_id": "50"}]},
                    "context": {"fanout_cap": 5000},
                },
            )
        ],
    ),
    Vector(
        "run the propagate graph",
        lambda w: [
            w.alice.post(
                "/runs/wait", json={"assistant_id": "propagate", "input": {"interaction_id": "x"}}
            )
        ],
    ),
    Vector(
        "run the rules graph",
        lambda w: [w.alice.post("/runs/wait", json={"assistant_id": "rules", "input": {}})],
    ),
    Vector(
        "run an admin preset (context home)",
        lambda w: [_run(w.alice, None, {"assistant_id": w.preset, "input": {"user_id": "1"}})],
    ),
    # state edits: the API's state-update paths do not show their values to auth handlers
    Vector(
        "state update sets user_id to bob, then continue",
        lambda w: _inject_state(
            w, {"user_id": BOB_ID}, "curate", {"assistant_id": "recommend", "input": None}
        ),
    ),
    Vector(
        "state update injects bob as a neighbour, then continue",
        lambda w: _inject_state(
            w, {"neighbours": NEIGHBOUR_B}, "curate", {"assistant_id": "recommend", "input": None}
        ),
    ),
    Vector("thread created with supersteps for bob", _supersteps_thread),
    Vector(
        "state update on bob's thread",
        lambda w: [
            w.alice.post(f"/threads/{w.bob_thread}/state", json={"values": {"request": "x"}})
        ],
    ),
    # threads by id
    Vector(
        "create thread with bob's id (do_nothing)",
        lambda w: [
            w.alice.post("/threads", json={"thread_id": w.bob_chat, "if_exists": "do_nothing"})
        ],
        refused=(403, 404, 409),
    ),
    Vector(
        "create thread with bob's id (raise)",
        lambda w: [w.alice.post("/threads", json={"thread_id": w.bob_chat, "if_exists": "raise"})],
        refused=(403, 404, 409),
    ),
    Vector(
        "copy bob's thread",
        lambda w: [w.alice.post(f"/threads/{w.bob_chat}/copy")],
        refused=(403, 404, 409),
    ),
    Vector("get bob's thread", lambda w: [w.alice.get(f"/threads/{w.bob_chat}")]),
    Vector("get bob's state", lambda w: [w.alice.get(f"/threads/{w.bob_chat}/state")]),
    Vector(
        "get bob's state at a checkpoint",
        lambda w: [w.alice.get(f"/threads/{w.bob_thread}/state/{w.bob_checkpoint}")],
    ),
    Vector(
        "post bob's state checkpoint",
        lambda w: [
            w.alice.post(
                f"/threads/{w.bob_thread}/state/checkpoint",
                json={"checkpoint": {"checkpoint_id": w.bob_checkpoint}},
            )
        ],
    ),
    Vector("get bob's history", lambda w: [w.alice.get(f"/threads/{w.bob_chat}/history")]),
    Vector(
        "post bob's history",
        lambda w: [w.alice.post(f"/threads/{w.bob_chat}/history", json={"limit": 10})],
    ),
    Vector(
        "bob's checkpoint storage",
        lambda w: [w.alice.get(f"/threads/{w.bob_chat}/storage")],
        refused=(403, 404, 501),
    ),
    Vector(
        "join bob's thread stream",
        lambda w: [w.alice.get(f"/threads/{w.bob_chat}/stream", timeout=10)],
        check=_sse_refusal,
    ),
    Vector(
        "patch bob's thread",
        lambda w: [w.alice.patch(f"/threads/{w.bob_chat}", json={"metadata": {"x": 1}})],
    ),
    Vector("delete bob's thread", lambda w: [w.alice.delete(f"/threads/{w.bob_chat}")]),
    Vector(
        "prune bob's thread",
        lambda w: [w.alice.post("/threads/prune", json={"thread_ids": [w.bob_chat]})],
    ),
    Vector(
        "hand alice's thread over to bob (owner metadata)",
        lambda w: [
            w.alice.patch(f"/threads/{w.alice_thread}", json={"metadata": {"owner": BOB_ID}})
        ],
    ),
    Vector(
        "create a thread claiming bob as owner",
        lambda w: [w.alice.post("/threads", json={"metadata": {"owner": BOB_ID}})],
        refused=(200, 403),
    ),
    Vector(
        "search threads by bob's owner",
        lambda w: [w.alice.post("/threads/search", json={"metadata": {"owner": BOB_ID}})],
        refused=(200, 403),
        check=lambda r: r.status_code == 403 or r.json() == [],
    ),
    Vector(
        "count bob's threads",
        lambda w: [w.alice.post("/threads/count", json={"metadata": {"owner": BOB_ID}})],
        refused=(200, 403),
        check=lambda r: r.status_code == 403 or r.json() == 0,
    ),
    # runs by id
    Vector("list bob's runs", lambda w: [w.alice.get(f"/threads/{w.bob_thread}/runs")]),
    Vector("get bob's run", lambda w: [w.alice.get(f"/threads/{w.bob_thread}/runs/{w.bob_run}")]),
    Vector(
        "join bob's run", lambda w: [w.alice.get(f"/threads/{w.bob_thread}/runs/{w.bob_run}/join")]
    ),
    Vector(
        "stream bob's run",
        lambda w: [w.alice.get(f"/threads/{w.bob_thread}/runs/{w.bob_run}/stream", timeout=10)],
        check=_sse_refusal,
    ),
    Vector(
        "cancel bob's run",
        lambda w: [w.alice.post(f"/threads/{w.bob_thread}/runs/{w.bob_run}/cancel")],
    ),
    Vector(
        "cancel bob's runs in bulk",
        lambda w: [
            w.alice.post("/runs/cancel", json={"thread_id": w.bob_thread, "run_ids": [w.bob_run]})
        ],
    ),
    Vector(
        "delete bob's run", lambda w: [w.alice.delete(f"/threads/{w.bob_thread}/runs/{w.bob_run}")]
    ),
    Vector(
        "v2 run.start command on bob's thread",
        lambda w: [
            w.alice.post(
                f"/threads/{w.bob_chat}/commands",
                json={
                    "id": 1,
                    "method": "run.start",
                    "params": {"assistant_id": "chat", "input": {"messages": []}},
                },
            )
        ],
        check=lambda r: r.status_code in (403, 404) or r.json().get("type") == "error",
    ),
    Vector(
        "v2 event stream of bob's thread",
        _v2_stream,
        check=lambda r: (
            r.status_code in (403, 404) or (r.status_code in (200, 599) and "event:" not in r.text)
        ),
    ),
    # crons
    Vector(
        "cron running recommend for bob",
        lambda w: [
            w.alice.post(
                "/runs/crons",
                json={
                    "assistant_id": "recommend",
                    "schedule": "0 0 1 1 *",
                    "input": {"user_id": BOB_ID},
                },
            )
        ],
    ),
    Vector(
        "cron on bob's thread",
        lambda w: [
            w.alice.post(
                f"/threads/{w.bob_thread}/runs/crons",
                json={
                    "assistant_id": "recommend",
                    "schedule": "0 0 1 1 *",
                    "input": {"user_id": "1"},
                },
            )
        ],
    ),
    Vector("search crons", lambda w: [w.alice.post("/runs/crons/search", json={})]),
    # assistants
    Vector(
        "create an assistant with context home",
        lambda w: [
            w.alice.post(
                "/assistants", json={"graph_id": "recommend", "context": {"home": "/tmp/elsewhere"}}
            )
        ],
    ),
    Vector(
        "patch the default recommend assistant",
        lambda w: [
            w.alice.patch(
                f"/assistants/{_assistant_id(w, 'recommend')}",
                json={"context": {"home": "/tmp/elsewhere"}},
            )
        ],
    ),
    Vector(
        "set the latest version of recommend",
        lambda w: [
            w.alice.post(f"/assistants/{_assistant_id(w, 'recommend')}/latest", json={"version": 1})
        ],
    ),
    Vector(
        "delete the chat assistant",
        lambda w: [w.alice.delete(f"/assistants/{_assistant_id(w, 'chat')}")],
    ),
    Vector(
        "read the admin preset (its context)", lambda w: [w.alice.get(f"/assistants/{w.preset}")]
    ),
    # store
    Vector(
        "store get in bob's namespace",
        lambda w: [
            w.alice.get("/store/items", params={"namespace": f"{BOB_ID}.notes", "key": "k"})
        ],
    ),
    Vector(
        "store put in bob's namespace",
        lambda w: [
            w.alice.put(
                "/store/items",
                json={
                    "namespace": [BOB_ID, "notes"],
                    "key": "k",
                    "value": {"secret": "overwritten"},
                },
            )
        ],
    ),
    Vector(
        "store delete in bob's namespace",
        lambda w: [
            w.alice.request(
                "DELETE", "/store/items", json={"namespace": [BOB_ID, "notes"], "key": "k"}
            )
        ],
    ),
    Vector(
        "store search bob's prefix",
        lambda w: [w.alice.post("/store/items/search", json={"namespace_prefix": [BOB_ID]})],
    ),
    Vector(
        "store list bob's namespaces",
        lambda w: [w.alice.post("/store/namespaces", json={"prefix": [BOB_ID]})],
    ),
    Vector(
        "store search everything",
        lambda w: [w.alice.post("/store/items/search", json={"namespace_prefix": []})],
        refused=(200, 403),
    ),
    Vector(
        "store list every namespace",
        lambda w: [w.alice.post("/store/namespaces", json={})],
        refused=(200, 403),
    ),
    # MCP and A2A
    Vector(  # MemRec's MCP tools (services/mcp_app.py); the admin graphs are not tools
        "MCP recommend for bob",
        lambda w: [_mcp(w.alice, "recommend_items", {"user_id": BOB_ID})],
        check=_mcp_tool_error,
    ),
    Vector(
        "MCP feedback for bob",
        lambda w: [_mcp(w.alice, "record_feedback", {"user_id": BOB_ID, "item_id": "1"})],
        check=_mcp_tool_error,
    ),
    Vector(
        "MCP explain for bob",
        lambda w: [_mcp(w.alice, "explain_recommendation", {"user_id": BOB_ID, "item_id": "1"})],
        check=_mcp_tool_error,
    ),
    Vector(
        "MCP propagate",
        lambda w: [_mcp(w.alice, "propagate", {"interaction_id": "x"})],
        check=_mcp_unknown_tool,
    ),
    Vector(
        "A2A message on bob's chat thread",
        lambda w: [
            _a2a(
                w.alice,
                _assistant_id(w, "chat"),
                "message/send",
                {
                    "message": {
                        "role": "user",
                        "messageId": "m1",
                        "contextId": w.bob_chat,
                        "parts": [{"kind": "text", "text": TWELVE_MONKEYS}],
                    }
                },
            )
        ],
        check=_jsonrpc_error,
    ),
    Vector(
        "A2A task of bob's run",
        lambda w: [
            _a2a(
                w.alice,
                _assistant_id(w, "recommend"),
                "tasks/get",
                {"id": f"{w.bob_thread}:{w.bob_run}"},
            )
        ],
        check=_jsonrpc_error,
    ),
    # routes of the dev server outside the API
    Vector(
        "debug route reads bob's raw thread",
        lambda w: [w.alice.get(f"/internal/debug/thread/{w.bob_chat}")],
    ),
    Vector("deploy info without a token", lambda w: [httpx.get(f"{w.url}/deploy")]),
    Vector("truncate every thread", lambda w: [w.alice.post("/internal/truncate")]),
]


# ---------------------------------------------------------------- what owners and the server keep


def test_both_token_headers_and_refusals(world: World) -> None:
    assert (
        client(world.url, ALICE, header="x-api-key")
        .get(f"/threads/{world.alice_thread}")
        .status_code
        == 200
    )
    assert client(world.url, ALICE).get(f"/threads/{world.alice_thread}").status_code == 200
    assert client(world.url).post("/threads", json={}).status_code == 401
    assert client(world.url, "not-a-token-at-all").post("/threads", json={}).status_code == 401
    both = client(world.url, None, Authorization=f"Bearer {BOB}", **{"x-api-key": ALICE})
    assert both.post("/threads", json={}).status_code == 401  # two different tokens
    studio = client(world.url, **{"x-auth-scheme": "langsmith"})
    assert studio.post("/threads", json={}).status_code == 403


def test_owner_resumes_a_paused_run_with_an_edit(world: World) -> None:
    """Resume continues from the interrupt (no new input step) and keeps the owner's edit."""
    alice = world.alice
    tid = _new_thread(alice)
    paused = _run(
        alice,
        tid,
        {"assistant_id": "recommend", "input": {"user_id": ALICE_ID}, "interrupt_before": ["rank"]},
    )
    assert paused.status_code == 200, paused.text
    state = alice.get(f"/threads/{tid}/state").json()
    assert state["next"] == ["rank"]
    subset = state["values"]["candidates"][:3]
    edit = alice.post(f"/threads/{tid}/state", json={"values": {"candidates": subset}})
    assert edit.status_code == 200, edit.text
    resumed = _run(alice, tid, {"assistant_id": "recommend", "input": None})
    assert resumed.status_code == 200, resumed.text
    assert [r["item_id"] for r in resumed.json()["ranking"]] != []
    assert sorted(r["item_id"] for r in resumed.json()["ranking"]) == sorted(subset)
    history = alice.post(f"/threads/{tid}/history", json={"limit": 100}).json()
    inputs = [h for h in history if h["metadata"].get("source") == "input"]
    assert len(inputs) == 1, "the resume started the run again from its input"
    assert (
        world.bob.post(
            f"/threads/{tid}/runs/wait", json={"assistant_id": "recommend", "input": None}
        ).status_code
        == 404
    )


def test_messages_only_input_runs_as_the_caller(world: World) -> None:
    """What Agent Chat UI sends: no user_id; the reply is for the authenticated user."""
    before = world.fingerprint()
    tid = _new_thread(world.alice)
    body = {
        "assistant_id": "chat",
        "input": {"messages": [{"role": "user", "content": "a 90s comedy"}]},
    }
    done = _run(world.alice, tid, body)
    assert done.status_code == 200, done.text
    assert "Here are my picks" in done.json()["messages"][-1]["content"]
    state = world.alice.get(f"/threads/{tid}/state").json()["values"]
    assert state["user_id"] == ALICE_ID
    assert changed_parts(before, world.fingerprint()) == []


def test_background_propagation_runs_as_the_internal_identity(world: World) -> None:
    """A user's feedback starts a propagate run on the server (not the in-process fallback)."""
    tid = _new_thread(world.alice)
    inp = {"messages": [{"role": "user", "content": "I loved Heat"}]}
    out = _run(world.alice, tid, {"assistant_id": "chat", "input": inp})
    assert out.status_code == 200, out.text
    (interaction_id,) = out.json()["recorded"]
    events = EventLog(world.store / "events.sqlite")
    try:
        deadline = time.monotonic() + 60
        while (job := events.get_job(interaction_id)) is None or job.status != "done":
            assert time.monotonic() < deadline, f"propagation not done in 60 s: {job}"
            time.sleep(0.25)
    finally:
        events.close()
    log = world.log_text()
    assert "could not start background propagate runs" not in log
    started = [
        ln
        for ln in log.splitlines()
        if "Starting background run" in ln and "graph_id=propagate" in ln
    ]
    assert started, "no background run of the propagate graph was started"
    refused = world.alice.post(
        "/runs", json={"assistant_id": "propagate", "input": {"interaction_id": interaction_id}}
    )
    assert refused.status_code == 403


def test_neighbours_memory_text_stays_private(world: World) -> None:
    """Synthesis reads curated neighbours' memories; a user's state never shows another's text."""
    tid = _new_thread(world.alice)
    done = _run(world.alice, tid, {"assistant_id": "recommend", "input": {"user_id": ALICE_ID}})
    assert done.status_code == 200, done.text
    state = world.alice.get(f"/threads/{tid}/state").json()["values"]
    others = [s for s in state["context"] if s["kind"] == "user"]
    assert others and state["facets"], "the run should use user neighbours"
    assert {s["text"] for s in others} == {WITHHELD}
    seen = json.dumps(state) + world.alice.post(f"/threads/{tid}/history", json={}).text
    for snippet in others:
        text = memory_text(world.store, snippet["ref"].split(":", 1)[1])
        assert text not in seen, f"{snippet['ref']}'s memory is visible to alice"
    # an admin debugging the same request (Studio) still sees what synthesis read
    tid = _new_thread(world.admin)
    _run(world.admin, tid, {"assistant_id": "recommend", "input": {"user_id": ALICE_ID}})
    context = world.admin.get(f"/threads/{tid}/state").json()["values"]["context"]
    first = next(s for s in context if s["kind"] == "user")
    assert first["text"][:60] == memory_text(world.store, first["ref"].split(":", 1)[1])[:60]


def test_v2_protocol_run_on_own_thread(world: World) -> None:
    """The protocol-v2 command route names the thread in its config: the owner may use it."""
    tid = _new_thread(world.alice)
    body = {
        "id": 1,
        "method": "run.start",
        "params": {"assistant_id": "recommend", "input": {"user_id": ALICE_ID}},
    }
    started = world.alice.post(f"/threads/{tid}/commands", json=body)
    assert started.status_code == 200 and started.json()["type"] == "success", started.text
    run_id = started.json()["result"]["run_id"]
    assert world.alice.get(f"/threads/{tid}/runs/{run_id}/join").status_code == 200
    assert world.alice.get(f"/threads/{tid}/state").json()["values"]["ranking"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_alice_cannot_reach_bob(world: World, vector: Vector) -> None:
    before = world.fingerprint()
    responses = vector.attack(world)
    leaks = [
        f"{r.request.method} {r.request.url.path} -> {r.status_code}: {c[:40]!r}"
        for r in responses
        for c in world.canaries
        if c in r.text
    ]
    time.sleep(0.3)  # a write started by the attack (a background run) has time to land
    changed = changed_parts(before, world.fingerprint())
    assert not leaks, f"CROSS-TENANT READ: {leaks}"
    assert not changed, f"CROSS-TENANT WRITE: bob's {changed} changed"
    first = responses[0]
    refused = vector.check(first) if vector.check else first.status_code in vector.refused
    assert refused, f"not refused: {first.status_code} {first.text[:400]}"
