"""Integration: `langgraph dev` serves langgraph.json offline over ml-100k; SDK, propagation.

MCP, the store, JSON state edits and stream hygiene are in tests/test_studio_server.py.

One dev server per module on a free 127.0.0.1 port, over a copy of the indexed ml-100k store. The
server runs with blocking-call detection on: every node keeps file, SQLite and Chroma I/O off the
event loop.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from memory_store.events import EventLog
from studio.presets import create_assistants, load_presets
from tests.support.fixtures import DATASET, copy_store, data_dir
from tests.support.langgraph_dev import langgraph_dev, project_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CANDIDATES = ["50", "181", "100", "258", "1", "300", "121", "7", "9", "12"]


@dataclass
class Server:
    url: str
    home: Path
    log: Path

    def log_text(self) -> str:
        return re.sub(r"\x1b\[[0-9;]*m", "", self.log.read_text(errors="replace"))


def _config(tmp: Path, home: Path) -> Path:
    """The shipped config, serving the graphs over the test's copy of the store."""
    assert set(json.loads((REPO / "langgraph.json").read_text())["graphs"]) == {
        "recommend",
        "chat",
        "propagate",
        "rules",
        "privacy",
    }
    env = {"MEMREC_HOME": str(home), "MEMREC_DATA_DIR": str(data_dir()), "MEMREC_ROLES": "offline"}
    return project_config(tmp, env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("langgraph-dev")
    home = copy_store(tmp / "home")
    log = tmp / "server.log"
    env = {**os.environ, "MEMREC_HOME": str(home), "MEMREC_DATA_DIR": str(data_dir())}
    env["MEMREC_AUTH"] = "off"  # open local mode: these tests are about the graphs, not auth
    for name in ("MEMREC_AUTH_TOKENS", "MEMREC_AUTH_TOKENS_FILE", "MEMREC_AUTH_STUDIO"):
        env.pop(name, None)
    with langgraph_dev(_config(tmp, home), env, log, cwd=REPO) as url:
        yield Server(url, home, log)


async def test_serves_the_four_graphs(server: Server) -> None:
    client = get_client(url=server.url)
    graphs = {a["graph_id"] for a in await client.assistants.search(limit=100)}
    assert {"recommend", "chat", "propagate", "rules"} <= graphs


async def test_chat_turn_streams_subgraph_updates_and_the_reply(server: Server) -> None:
    client = get_client(url=server.url)
    thread = await client.threads.create()
    inp = {"user_id": "1", "messages": [{"role": "user", "content": "a 90s comedy, no horror"}]}
    subgraph_nodes: list[str] = []
    chat_nodes: list[str] = []
    message_events = 0
    async for part in client.runs.stream(
        thread["thread_id"],
        "chat",
        input=inp,
        stream_mode=["updates", "messages"],
        stream_subgraphs=True,
    ):
        assert part.event != "error", part.data
        if part.event.startswith("updates|recommend"):
            subgraph_nodes += list(part.data)
        elif part.event == "updates":
            chat_nodes += list(part.data)
        elif part.event.startswith("messages"):
            message_events += 1
    assert subgraph_nodes == ["curate", "synthesize", "rank"]
    assert chat_nodes == ["understand", "retrieve", "recommend", "respond"]
    assert message_events > 0
    state = await client.threads.get_state(thread["thread_id"])
    reply = state["values"]["messages"][-1]["content"]
    assert "Here are my picks (Comedy, 1990s, no Horror):" in reply
    assert re.search(r"^1\. .+ - .+", reply, flags=re.M)


async def test_recommend_run_returns_a_ranking_of_the_candidates(server: Server) -> None:
    client = get_client(url=server.url)
    out = await client.runs.wait(
        None, "recommend", input={"user_id": "1", "candidates": CANDIDATES}
    )
    assert sorted(r["item_id"] for r in out["ranking"]) == sorted(CANDIDATES)
    assert all(r["rationale"] for r in out["ranking"])
    assert {"curate", "synthesize", "rank"} <= set(out["usage"])


async def test_feedback_starts_a_background_propagate_run_that_completes(server: Server) -> None:
    client = get_client(url=server.url)
    thread = await client.threads.create()
    inp = {"user_id": "1", "messages": [{"role": "user", "content": "I loved Heat"}]}
    out = await client.runs.wait(thread["thread_id"], "chat", input=inp)
    assert "Noted: you loved Heat (1995)." in out["messages"][-1]["content"]
    (interaction_id,) = out["recorded"]
    events = EventLog(server.home / "stores" / DATASET / "events.sqlite")
    try:
        deadline = time.monotonic() + 60
        while (job := events.get_job(interaction_id)) is None or job.status != "done":
            assert time.monotonic() < deadline, f"propagation not done in 60 s: {job}"
            time.sleep(0.25)
        assert events.writes_caused_by(interaction_id), "propagation wrote no memory"
    finally:
        events.close()
    log = server.log_text()
    started = [
        line
        for line in log.splitlines()
        if "Starting background run" in line and "graph_id=propagate" in line
    ]
    assert started, "no background run of the propagate graph was started"
    assert "could not start background propagate runs" not in log


async def test_assistant_presets_are_created_and_run(server: Server) -> None:
    client = get_client(url=server.url)
    made = await create_assistants(client)
    assert {a["name"] for a in made} == {p.name for p in load_presets()}
    again = await create_assistants(client)  # idempotent: same assistants, none added
    assert [a["assistant_id"] for a in again] == [a["assistant_id"] for a in made]
    offline = next(a for a in made if a["name"] == "recommend-offline")
    assert offline["context"]["roles"] == "offline"
    out = await client.runs.wait(
        None, offline["assistant_id"], input={"user_id": "2", "candidates": CANDIDATES[:4]}
    )
    assert len(out["ranking"]) == 4
