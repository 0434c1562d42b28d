"""The recommend graph with LLM roles against an OpenAI-compatible server on 127.0.0.1.

Real sockets and the real langchain-openai client: two chat completions per request (synthesize,
rank), the neighbour context within tau, structured output parsed, usage per node, and a malformed
reply repaired or replaced by the offline role, and counted.
"""

from dataclasses import replace

import pytest

from graph.recommend import graph
from prompts.blocks import extract_block
from prompts.tokens import count_tokens
from tests.support.fixtures import ctx, ws  # noqa: F401
from tests.support.openai_server import OpenAITestServer, Reply

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    with OpenAITestServer() as srv:
        yield srv


@pytest.fixture
def llm_ctx(ctx, server):  # noqa: F811
    server.clear()
    spec = f"openai-compatible:test-model@{server.url}/v1"
    return replace(ctx, roles="offline", lmmem=spec, llmrec=spec, timeout_s=10.0)


def _user_block(request, tag: str) -> str:
    user = next(m for m in request.messages if m.get("role") == "user")
    content = user["content"] if isinstance(user["content"], str) else str(user["content"])
    return extract_block(content, tag) or ""


async def test_two_chat_completions_per_request(ws, llm_ctx, server) -> None:  # noqa: F811
    out = await graph.ainvoke({"user_id": "1"}, context=llm_ctx)
    assert [r.task for r in server.chat_requests()] == ["synthesize", "rank"]
    # structured output parsed: the facets and rationales are the server's
    assert out["facets"] and all(f.name.startswith("taste") for f in out["facets"])
    assert all("fits the user's memory" in r.rationale for r in out["ranking"])
    expected = {ws.dataset.item_ids[i] for i in ws.benchmark_candidates()[ws.user_code("1")]}
    assert {r.item_id for r in out["ranking"]} == expected
    # usage per node, from the server's usage block
    usage = out["usage"]
    assert usage["synthesize"].calls == 1 and usage["rank"].calls == 1
    assert usage["synthesize"].tokens_in > 0 and usage["rank"].tokens_out > 0
    assert usage["curate"].calls == 0


async def test_neighbour_context_stays_within_tau(ws, llm_ctx, server) -> None:  # noqa: F811
    for tau in (200, 1800):
        server.clear()
        await graph.ainvoke({"user_id": "13"}, context=replace(llm_ctx, tau=tau))
        (synth,) = server.chat_requests("synthesize")
        block = _user_block(synth, "NEIGHBOURS")
        assert block
        assert count_tokens(block) <= tau


async def test_repeat_request_for_an_unchanged_user_is_one_call(ws, llm_ctx, server) -> None:  # noqa: F811
    await graph.ainvoke({"user_id": "7"}, context=llm_ctx)
    server.clear()
    out = await graph.ainvoke({"user_id": "7"}, context=llm_ctx)
    assert [r.task for r in server.chat_requests()] == ["rank"]
    assert out["usage"]["synthesize"].calls == 0


async def test_malformed_reply_is_repaired_and_counted(ws, llm_ctx, server) -> None:  # noqa: F811
    server.script(Reply(fault="invalid_json"))  # the synthesis reply is broken once
    out = await graph.ainvoke({"user_id": "2"}, context=llm_ctx)
    tasks = [(r.task, r.repair) for r in server.chat_requests()]
    assert tasks == [("synthesize", False), ("synthesize", True), ("rank", False)]
    assert out["usage"]["synthesize"].repairs == 1 and out["usage"]["synthesize"].fallbacks == 0
    assert out["facets"]


async def test_twice_malformed_falls_back_to_offline_and_counts(ws, llm_ctx, server) -> None:  # noqa: F811
    cands = [ws.dataset.item_ids[i] for i in ws.benchmark_candidates()[ws.user_code("3")]]
    server.script(Reply(fault="hallucinated_ids"), Reply(fault="truncated_json"))
    server.script(Reply(fault="truncated_json"), Reply(fault="truncated_json"))
    out = await graph.ainvoke({"user_id": "3", "candidates": cands}, context=llm_ctx)
    assert sorted(r.item_id for r in out["ranking"]) == sorted(cands)  # always a permutation
    total = out["usage"]["synthesize"].merged(out["usage"]["rank"])
    assert total.repairs >= 1 and total.fallbacks >= 1
