"""Propagation with the LLM-backed LMMem against the OpenAI-compatible test server (ChatOpenAI).

- one chat completion per interaction, for users of degree 5, 50 and 500;
- a recommend round trip with feedback returns before a slow (2 s) propagation call finishes, and
  the memory is updated afterwards;
- cached facets: a repeat request for an unchanged user makes one model call instead of two.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import graph.background as scheduling
from graph.background import shared_worker, stop_shared_workers
from graph.recommend import build_recommend_graph
from memory_store.workspace import Workspace, open_workspace, register_workspace
from nodes.record import record_interaction
from prompts.blocks import extract_block
from schemas.context import MemRecContext
from services.index import build_index
from tests.support.openai_server import OpenAITestServer, RecordedRequest, Reply, default_answer
from tests.support.propagation import propagate

pytestmark = pytest.mark.integration

N_ITEMS = 700
DEGREES = {"d5": 5, "d50": 50, "d500": 500}
SERVER_USER_MEMORY = "Enjoys the item just consumed; keeps earlier tastes."
# Each user's rewrite in words of its own: the screen refuses a rewrite that copies a neighbour's
# memory, and the users of this module are each other's neighbours.
OWN_WORDS = {
    "d5": "Keeps to quiet dramas at home.",
    "d50": "Picks comedies for weekend evenings.",
    "d500": "Hunts thrillers and the odd horror film.",
}
GENRES = ["Drama", "Comedy", "Thriller", "Horror", "Romance", "Sci-Fi"]


def write_dataset(folder: Path) -> None:
    """A generic-format dataset with users of degree 5, 50 and 500 plus 40 filler users."""
    rng = random.Random(3)
    folder.mkdir(parents=True)
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "genres"])
        for i in range(N_ITEMS):
            w.writerow([f"i{i}", f"Film {i}", f"{GENRES[i % 6]}|{GENRES[(i * 7) % 6]}"])
    with open(folder / "interactions.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "timestamp"])
        users = {**DEGREES, **{f"f{n}": 12 for n in range(40)}}
        for user, degree in users.items():
            for t, item in enumerate(rng.sample(range(N_ITEMS - 20), degree)):
                w.writerow([user, f"i{item}", 1_700_000_000 + 3600 * t])


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root / "data")
    build_index(str(root / "data"), home=root / "home")
    return str(root / "data"), str(root / "home")


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as srv:
        yield srv


@pytest.fixture
def llm_ws(synthetic: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    dataset, home = synthetic
    monkeypatch.setenv(scheduling.MODE_ENV, "worker")
    ws = open_workspace(dataset, home=home)
    register_workspace(ws, dataset, home=home)
    yield ws
    ws.events.close()


def llm_context(synthetic: tuple[str, str], server: OpenAITestServer) -> MemRecContext:
    dataset, home = synthetic
    spec = f"openai-compatible:test-model@{server.url}/v1"
    return MemRecContext(dataset=dataset, home=home, lmmem=spec, llmrec=spec, timeout_s=10)


def neighbour_rows(request: RecordedRequest) -> int:
    user = next(m["content"] for m in request.messages if m["role"] == "user")
    block = extract_block(user, "NEIGHBOURS") or ""
    return sum(1 for line in block.splitlines() if line.strip().startswith("{"))


@pytest.mark.parametrize("user", list(DEGREES))
async def test_one_chat_completion_per_interaction_whatever_the_degree(
    synthetic: tuple[str, str], server: OpenAITestServer, llm_ws: Workspace, user: str
) -> None:
    def own_words(request: RecordedRequest) -> Reply | None:
        if request.task != "propagate":
            return None
        answer = default_answer(request.task, request.messages)
        return Reply(content=json.dumps({**answer, "user_memory": OWN_WORDS[user]}))

    server.handler = own_words
    ctx = llm_context(synthetic, server)
    u = llm_ws.user_code(user)
    assert llm_ws.graph.user_degree[u] >= DEGREES[user] - 2  # leave-one-out holds out two
    unseen = [i for i in llm_ws.dataset.item_ids if not llm_ws.graph.has(u, llm_ws.item_code(i))]
    event = record_interaction(llm_ws, user, unseen[-1])
    report = await propagate(llm_ws, ctx, event)
    requests = server.chat_requests()
    assert len(requests) == 1 and requests[0].task == "propagate"
    assert report.usage.calls == 1 and report.usage.model.startswith("openai-compatible:test-model")
    assert 1 <= neighbour_rows(requests[0]) <= ctx.fanout_cap
    assert len(report.writes) <= 2 + ctx.fanout_cap
    assert report.refused_rewrites == 0
    assert llm_ws.memory_text("user", user) == OWN_WORDS[user]


async def test_feedback_round_trip_returns_before_slow_propagation(
    synthetic: tuple[str, str], llm_ws: Workspace
) -> None:
    def slow_propagation(request: RecordedRequest) -> Reply | None:
        return Reply(delay_s=2.0) if request.task == "propagate" else None

    graph = build_recommend_graph().compile()
    with OpenAITestServer(handler=slow_propagation) as server:
        ctx = llm_context(synthetic, server)
        user = "f3"
        u = llm_ws.user_code(user)
        unseen = [
            i for i in llm_ws.dataset.item_ids if not llm_ws.graph.has(u, llm_ws.item_code(i))
        ]
        candidates = unseen[:10]
        await graph.ainvoke({"user_id": user, "candidates": candidates}, context=ctx)  # warm up
        before = llm_ws.memories.get("user", user)
        assert before is not None
        started = time.perf_counter()
        out = await graph.ainvoke(
            {"user_id": user, "candidates": candidates, "feedback": [{"item_id": candidates[0]}]},
            context=ctx,
        )
        elapsed = time.perf_counter() - started
        (iid,) = out["recorded"]
        sys.stderr.write(f"\nrecommend + feedback round trip: {elapsed * 1000:.0f} ms\n")
        assert elapsed < 1.0, f"the round trip took {elapsed:.2f} s"
        assert llm_ws.memories.get("user", user) == before  # propagation still in flight
        assert llm_ws.events.get_interaction(iid) is not None  # but the interaction is durable
        worker = shared_worker(llm_ws, ctx)
        assert await worker.wait_idle(15)
        sys.stderr.write(f"memory updated {time.perf_counter() - started:.2f} s after the call\n")
        await stop_shared_workers()
        after = llm_ws.memories.get("user", user)
        assert after is not None and after.version == before.version + 1
        assert after.text == SERVER_USER_MEMORY and after.source == iid
        assert server.calls["propagate"] == 1


async def test_cached_facets_make_a_repeat_request_one_call(
    synthetic: tuple[str, str], server: OpenAITestServer, llm_ws: Workspace
) -> None:
    ctx = llm_context(synthetic, server)
    graph = build_recommend_graph().compile()
    user = "f7"
    u = llm_ws.user_code(user)
    unseen = [i for i in llm_ws.dataset.item_ids if not llm_ws.graph.has(u, llm_ws.item_code(i))]
    inp = {"user_id": user, "candidates": unseen[:10]}
    first = await graph.ainvoke(inp, context=ctx)
    assert server.calls == {"synthesize": 1, "rank": 1}
    second = await graph.ainvoke(inp, context=ctx)
    assert server.calls == {"synthesize": 1, "rank": 2}  # one call instead of two
    assert second["usage"]["synthesize"].model == "cache"
    assert second["usage"]["synthesize"].calls == 0
    assert second["facets"] == first["facets"]
    event = record_interaction(llm_ws, user, unseen[-1])
    await propagate(llm_ws, ctx, event)  # rewrites the user's memory
    third = await graph.ainvoke(inp, context=ctx)
    assert server.calls["synthesize"] == 2
    assert third["usage"]["synthesize"].model != "cache"
