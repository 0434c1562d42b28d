"""LLM-backed roles against a real OpenAI-compatible HTTP server with the real ChatOpenAI client."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from prompts import propagation as propagation_prompt
from prompts.blocks import schema_text
from prompts.repair import REPAIR_MARKER
from prompts.tokens import count_tokens
from roles.client import forget_endpoints, retry_after_s
from roles.guard import parse_reply
from roles.llm_roles import LLMLLMRec, LLMLMMem
from roles.models import make_model_client
from roles.settings import RoleSettings
from schemas.records import (
    CallUsage,
    CandidateItem,
    Facet,
    FacetSet,
    InteractionEvent,
    NeighbourSnippet,
    PropagationInput,
    PropagationResult,
    RankedItem,
    Ranking,
    RankingInput,
    RoleOutput,
    SynthesisInput,
)
from schemas.ruleset import DomainStats, RuleSet, generic_rules
from tests.support.openai_server import OpenAITestServer, Reply

pytestmark = pytest.mark.integration

NEIGHBOURS = [
    NeighbourSnippet(ref="user:u2", kind="user", text="Loves noir thrillers.", score=0.9),
    NeighbourSnippet(ref="item:i9", kind="item", text="A slow-burn detective film.", score=0.7),
    NeighbourSnippet(ref="user:u3", kind="user", text="Watches anything with heists.", score=0.5),
]
CANDIDATES = [CandidateItem(item_id=f"i{n}", title=f"Film {n}") for n in range(1, 6)]
STATS = DomainStats(
    dataset="tiny",
    n_users=10,
    n_items=20,
    n_interactions=50,
    density=0.25,
    user_degree_median=5,
    user_degree_p90=9,
    item_degree_median=2,
    item_degree_p90=5,
    co_count_median=1,
    co_count_p90=3,
    recency_spread_days=100,
    has_clock=True,
    text_tokens_mean=12,
    attributes_per_item=2,
)
SYNTH = SynthesisInput(user_id="u1", user_memory="Likes crime films.", neighbours=NEIGHBOURS)
RANK = RankingInput(
    user_id="u1",
    user_memory="Likes crime films.",
    facets=[Facet(name="noir", description="Dark crime.", confidence=0.8, evidence=["user:u2"])],
    candidates=CANDIDATES,
    request="something tense",
)
PROP = PropagationInput(
    event=InteractionEvent(interaction_id="x1", user_id="u1", item_id="i3", ts=1.0),
    item_title="Film 3",
    user_memory="Likes crime films.",
    item_memory="A crime film.",
    neighbours=NEIGHBOURS,
)


class FakeLMMem:
    """Offline stand-in: recognisable answers, counts its calls."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def generate_rules(self, stats: DomainStats) -> RoleOutput[RuleSet]:
        self.calls["rules"] += 1
        return RoleOutput(value=generic_rules(), usage=CallUsage())

    async def synthesize(self, inp: SynthesisInput) -> RoleOutput[FacetSet]:
        self.calls["synthesize"] += 1
        facet = Facet(name="fallback facet", description="offline", confidence=0.5)
        return RoleOutput(value=FacetSet(facets=[facet]), usage=CallUsage())

    async def propagate(self, inp: PropagationInput) -> RoleOutput[PropagationResult]:
        self.calls["propagate"] += 1
        value = PropagationResult(user_memory="offline reflection", item_memory=inp.item_memory)
        return RoleOutput(value=value, usage=CallUsage())


class FakeLLMRec:
    """Offline stand-in ranking candidates in reverse order."""

    def __init__(self) -> None:
        self.calls = 0

    async def rank(self, inp: RankingInput) -> RoleOutput[Ranking]:
        self.calls += 1
        items = [
            RankedItem(item_id=c.item_id, score=float(n), rationale="offline order")
            for n, c in enumerate(reversed(inp.candidates))
        ]
        return RoleOutput(value=Ranking(items=items), usage=CallUsage())


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(server: OpenAITestServer) -> Iterator[None]:
    server.clear()
    server.latency_s = 0.0
    forget_endpoints()
    yield
    server.clear()


def _client(server: OpenAITestServer, **settings: Any):
    """A role client on the test server: 2 s per attempt, 10 ms backoff, 2 retries."""
    opts: dict[str, Any] = {"timeout_s": 2.0, "backoff_base_s": 0.01, "retries": 2, **settings}
    return make_model_client(
        f"openai-compatible:test-model@{server.url}/v1", RoleSettings(**opts), api_key="test"
    )


def _lmmem(server: OpenAITestServer, **settings: Any) -> tuple[LLMLMMem, FakeLMMem]:
    fallback = FakeLMMem()
    return LLMLMMem(_client(server, **settings), fallback, seed=0), fallback


def _llmrec(server: OpenAITestServer, **settings: Any) -> tuple[LLMLLMRec, FakeLLMRec]:
    fallback = FakeLLMRec()
    return LLMLLMRec(_client(server, **settings), fallback, seed=0), fallback


async def _call(server: OpenAITestServer, task: str, **kwargs) -> RoleOutput:
    if task == "rank":
        ranker, _ = _llmrec(server, **kwargs)
        return await ranker.rank(RANK)
    lmmem, _ = _lmmem(server, **kwargs)
    if task == "rules":
        return await lmmem.generate_rules(STATS)
    if task == "synthesize":
        return await lmmem.synthesize(SYNTH)
    return await lmmem.propagate(PROP)


def _ids(ranking: Ranking) -> list[str]:
    return [item.item_id for item in ranking.items]


# --- valid replies -------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["rules", "synthesize", "rank", "propagate"])
async def test_valid_reply_is_one_completion_in_json_schema_mode(server, task):
    out = await _call(server, task)
    assert server.calls == Counter({task: 1})
    (request,) = server.chat_requests()
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert "properties" in response_format["json_schema"]["schema"]
    assert request.body["max_tokens"] > 0  # every call carries a completion-token cap
    assert out.usage.output_mode == "json_schema"
    assert request.body["model"] == "test-model"
    usage = out.usage
    assert (usage.calls, usage.retries, usage.repairs, usage.fallbacks) == (1, 0, 0, 0)
    assert usage.model.startswith("openai-compatible:test-model@")  # the spec asked
    assert usage.latency_ms > 0


async def test_valid_structured_outputs_are_parsed(server):
    lmmem, fallback = _lmmem(server)
    rules = (await lmmem.generate_rules(STATS)).value
    assert rules.name == "test-rules" and rules.source == "generated"
    facets = (await lmmem.synthesize(SYNTH)).value.facets
    assert [f.name for f in facets] == ["taste 1", "taste 2", "taste 3"]
    assert facets[0].evidence == ["user:u2", "item:i9"]
    prop = (await lmmem.propagate(PROP)).value
    assert [p.ref for p in prop.neighbour_patches] == [n.ref for n in NEIGHBOURS]
    ranker, rec_fallback = _llmrec(server)
    ranking = (await ranker.rank(RANK)).value
    assert _ids(ranking) == [c.item_id for c in CANDIDATES]
    assert all(item.rationale for item in ranking.items)
    assert fallback.calls == Counter() and rec_fallback.calls == 0


async def test_usage_tokens_are_the_servers_counts(server):
    out = await _call(server, "rank")
    (request,) = server.chat_requests()
    prompt_tokens = sum(count_tokens(m["content"]) for m in request.messages)
    assert out.usage.tokens_in == prompt_tokens > 100
    completion = json.dumps({"items": [i.model_dump() for i in out.value.items]})
    assert out.usage.tokens_out == count_tokens(completion)  # the default answer, re-serialised


# --- malformed replies: one repair, then fallback ------------------------------------------


@pytest.mark.parametrize(
    "fault", ["invalid_json", "truncated_json", "wrong_types", "empty_choices"]
)
@pytest.mark.parametrize("task", ["synthesize", "rank"])
async def test_malformed_reply_gets_exactly_one_repair(server, task, fault):
    server.script(Reply(fault=fault))
    out = await _call(server, task)
    first, second = server.chat_requests()
    assert not first.repair and second.repair
    repair_text = second.messages[-1]["content"]
    schema = FacetSet if task == "synthesize" else Ranking
    assert repair_text.startswith(REPAIR_MARKER) and schema_text(schema) in repair_text
    assert second.messages[:-2] == first.messages  # the same conversation, plus the bad answer
    assert (out.usage.calls, out.usage.repairs, out.usage.fallbacks) == (2, 1, 0)


async def test_prose_and_fences_around_json_need_no_repair(server):
    server.script(Reply(fault="prose_around"))
    out = await _call(server, "rank")
    assert len(server.chat_requests()) == 1
    assert out.usage.repairs == 0 and _ids(out.value) == [c.item_id for c in CANDIDATES]


@pytest.mark.parametrize("task", ["rules", "synthesize", "rank", "propagate"])
async def test_malformed_twice_falls_back_to_the_offline_role(server, task):
    server.script(Reply(fault="invalid_json"), Reply(fault="truncated_json"))
    out = await _call(server, task)
    assert len(server.chat_requests()) == 2
    assert (out.usage.calls, out.usage.repairs, out.usage.fallbacks) == (2, 1, 1)
    assert out.usage.model.startswith("openai-compatible:test-model@")  # the model tried
    assert out.usage.fallback_reason.startswith("malformed reply after one repair")
    assert out.usage.errors == {"malformed": 2}
    if task == "rank":
        assert [i.rationale for i in out.value.items] == ["offline order"] * len(CANDIDATES)
    elif task == "synthesize":
        assert out.value.facets[0].name == "fallback facet"
    elif task == "propagate":
        assert out.value.user_memory == "offline reflection"
    else:
        assert out.value.source == "generic"


async def test_empty_user_memory_rewrite_is_repaired(server):
    bad = {"user_memory": "  ", "item_memory": "x", "neighbour_patches": []}
    server.script(Reply(content=json.dumps(bad)))
    out = await _call(server, "propagate")
    assert out.usage.repairs == 1 and out.value.user_memory.strip()


# --- transport faults: retries, Retry-After, timeouts ---------------------------------------


async def test_429_honours_retry_after_then_succeeds(server):
    server.script(Reply.error(429, retry_after="0.3"))
    started = time.perf_counter()
    out = await _call(server, "rank")
    elapsed = time.perf_counter() - started
    assert len(server.chat_requests()) == 2
    assert (out.usage.calls, out.usage.retries, out.usage.fallbacks) == (1, 1, 0)
    assert elapsed >= 0.3


@pytest.mark.parametrize(
    "reply", [Reply.error(500), Reply.error(503), Reply(fault="reset")], ids=["500", "503", "reset"]
)
async def test_transient_failure_is_retried_then_succeeds(server, reply):
    server.script(reply)
    out = await _call(server, "synthesize")
    assert len(server.chat_requests()) == 2
    assert (out.usage.calls, out.usage.retries, out.usage.fallbacks) == (1, 1, 0)
    assert out.value.facets[0].name == "taste 1"


async def test_exhausted_retries_fall_back(server):
    server.script(*[Reply.error(503)] * 3)
    out = await _call(server, "rank", retries=2)
    assert len(server.chat_requests()) == 3
    assert (out.usage.retries, out.usage.fallbacks, out.usage.repairs) == (2, 1, 0)
    assert len(out.value.items) == len(CANDIDATES)


async def test_client_error_is_not_retried(server):
    server.script(Reply.error(400))
    out = await _call(server, "rank")
    assert len(server.chat_requests()) == 1
    assert (out.usage.retries, out.usage.fallbacks) == (0, 1)


async def test_slow_first_byte_beyond_timeout_falls_back(server):
    server.script(Reply(delay_s=1.5), Reply(delay_s=1.5))
    started = time.perf_counter()
    out = await _call(server, "synthesize", timeout_s=0.3, retries=1, retry_timeouts=True)
    assert time.perf_counter() - started < 1.2
    assert len(server.chat_requests()) == 2
    assert (out.usage.retries, out.usage.fallbacks) == (1, 1)
    assert out.value.facets[0].name == "fallback facet"


async def test_server_latency_does_not_serialise_concurrent_calls(server):
    server.latency_s = 0.3
    started = time.perf_counter()
    outs = await asyncio.gather(*[_call(server, "rank") for _ in range(4)])
    assert time.perf_counter() - started < 1.0  # 4 x 0.3 s would be 1.2 s if serialised
    assert all(o.usage.fallbacks == 0 for o in outs)
    assert server.calls["rank"] == 4


# --- post-processing --------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["hallucinated_ids", "duplicate_ids", "missing_ids"])
async def test_ranking_is_always_a_permutation(server, fault):
    server.script(Reply(fault=fault))
    ranker, fallback = _llmrec(server)
    out = await ranker.rank(RANK)
    ids = _ids(out.value)
    assert sorted(ids) == sorted(c.item_id for c in CANDIDATES) and len(ids) == len(CANDIDATES)
    assert out.usage.repairs == 1 and out.usage.fallbacks == 0 and out.usage.calls == 1
    assert fallback.calls == (0 if fault == "hallucinated_ids" else 1)
    scores = [item.score for item in out.value.items]
    assert scores == sorted(scores, reverse=True)


async def test_missing_candidates_are_appended_in_fallback_order(server):
    reply = {"items": [{"item_id": "i2", "score": 0.9, "rationale": "Fits."}]}
    server.script(Reply(content=json.dumps(reply)))
    ranker, _ = _llmrec(server)
    out = await ranker.rank(RANK)
    assert _ids(out.value) == ["i2", "i5", "i4", "i3", "i1"]
    assert out.value.items[1].rationale == "offline order"


async def test_ranking_without_any_candidate_id_is_repaired(server):
    ghost = {"items": [{"item_id": "ghost", "score": 1.0, "rationale": "x"}]}
    server.script(Reply(content=json.dumps(ghost)))
    out = await _call(server, "rank")
    assert out.usage.repairs == 1 and out.usage.calls == 2
    assert _ids(out.value) == [c.item_id for c in CANDIDATES]


async def test_empty_rationale_is_filled_from_evidence(server):
    items = [
        {"item_id": c.item_id, "score": 1.0, "rationale": "", "evidence": ["noir"]}
        for c in CANDIDATES
    ]
    server.script(Reply(content=json.dumps({"items": items})))
    out = await _call(server, "rank")
    assert all(item.rationale == "Supported by noir." for item in out.value.items)
    assert out.usage.repairs == 1


async def test_synthesis_is_capped_and_evidence_restricted(server):
    facets = [
        {"name": f"f{n}", "description": "d", "confidence": 0.5, "evidence": ["user:u2", "user:x"]}
        for n in range(5)
    ]
    server.script(Reply(content=json.dumps({"facets": facets})))
    lmmem, _ = _lmmem(server)
    out = await lmmem.synthesize(SYNTH.model_copy(update={"max_facets": 2}))
    assert [f.name for f in out.value.facets] == ["f0", "f1"]
    assert all(f.evidence == ["user:u2"] for f in out.value.facets)
    assert out.usage.repairs == 1


async def test_propagation_patches_only_given_refs_within_caps(server):
    reply = {
        "user_memory": "x" * (propagation_prompt.USER_MEMORY_MAX_CHARS + 300),
        "item_memory": "Liked by crime fans.",
        "neighbour_patches": [
            {"ref": "user:u2", "note": "Also liked Film 3."},
            {"ref": "user:stranger", "note": "Not a neighbour."},
            {"ref": "user:u2", "note": "Duplicate."},
        ],
    }
    server.script(Reply(content=json.dumps(reply)))
    out = await _call(server, "propagate")
    assert [p.ref for p in out.value.neighbour_patches] == ["user:u2"]
    assert out.value.neighbour_patches[0].note == "Also liked Film 3."
    assert len(out.value.user_memory) == propagation_prompt.USER_MEMORY_MAX_CHARS
    assert out.usage.repairs == 1 and out.usage.fallbacks == 0


# --- the guard's pieces ---------------------------------------------------------------------


def test_parse_reply_is_lenient_about_wrapping_only():
    text = 'Here you go:\n```json\n{"facets": [{"name": "a {b}", "description": "\\"}\\"", '
    text += '"confidence": 0.5}]}\n```\nDone.'
    assert parse_reply(text, FacetSet).facets[0].name == "a {b}"
    with pytest.raises(ValueError, match="no complete, valid JSON object"):
        parse_reply('{"facets": [', FacetSet)
    with pytest.raises(ValueError, match="does not match the schema"):
        parse_reply('{"facets": "none"}', FacetSet)


def test_retry_after_header_forms():
    def err(headers: dict[str, str]) -> httpx.Headers:
        return httpx.Headers(headers)

    assert retry_after_s(err({"retry-after": "2"})) == 2.0
    assert retry_after_s(err({"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(err({})) is None
    assert 0 < retry_after_s(err({"retry-after": _http_date(time.time() + 30)})) <= 31


def _http_date(ts: float) -> str:
    from email.utils import formatdate

    return formatdate(ts, usegmt=True)


# --- the test server's own protocol ---------------------------------------------------------


async def test_server_streams_with_usage_and_serves_models_and_embeddings(server):
    client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
    server.script(Reply(content="hello streaming world", chunk_delay_s=0.01))
    stream = await client.chat.completions.create(
        model="test-model",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == "hello streaming world"
    assert usage is not None and usage.completion_tokens == count_tokens(text)
    models = await client.models.list()
    assert [m.id for m in models.data] == ["test-model"]
    first = await client.embeddings.create(model="e", input=["a", "b"])
    again = await client.embeddings.create(model="e", input="a")
    assert len(first.data[0].embedding) == 64
    assert first.data[0].embedding == again.data[0].embedding != first.data[1].embedding
    assert server.calls == Counter({"unknown": 1})
    await client.close()


def test_server_handler_scripts_replies_per_request():
    seen: list[str | None] = []

    def handler(request):
        seen.append(request.task)
        return Reply.error(503) if len(seen) == 1 else None

    with OpenAITestServer(handler) as srv:
        with httpx.Client(base_url=srv.url) as http:
            payload = {"model": "m", "messages": [{"role": "system", "content": "TASK: rank"}]}
            assert http.post("/v1/chat/completions", json=payload).status_code == 503
            body = http.post("/v1/chat/completions", json=payload).json()
    assert json.loads(body["choices"][0]["message"]["content"]) == {"items": []}
    assert seen == ["rank", "rank"] and srv.calls == Counter({"rank": 2})


def test_one_role_serves_several_event_loops(server):
    """A cached role is used from successive asyncio.run calls (CLI commands, workers)."""
    ranker, _ = _llmrec(server)
    first = asyncio.run(ranker.rank(RANK))
    second = asyncio.run(ranker.rank(RANK))
    assert first.usage.fallbacks == second.usage.fallbacks == 0
    assert server.calls["rank"] == 2


def test_numbers_beyond_their_bounds_are_put_on_the_bound():
    """A grammar (llama.cpp's json_object + schema) does not hold numbers to ``le``/``ge``."""
    text = '{"facets": [{"name": "noir", "description": "d", "confidence": 2}]}'
    fixes: list[str] = []
    assert parse_reply(text, FacetSet, fixes=fixes).facets[0].confidence == 1.0
    assert fixes == ["numbers put on their bounds"]
    with pytest.raises(ValueError, match="does not match the schema"):
        parse_reply('{"facets": [{"name": "noir", "confidence": 2}]}', FacetSet)


def test_the_fast_reply_parse_finds_what_the_balanced_scan_finds():
    """_first_json_object tries one C parse from the first brace before scanning for a balanced
    object; on any text both give the same answer (prose braces, strings, truncation)."""
    import random

    from roles.guard import _first_json_object, scanned_json_object

    rng = random.Random(3)
    pieces = ["{", "}", '"', "\\", "a", " ", ":", ",", "1", "[", "]", '{"x": 1}', "\n", "null"]
    pieces += ['{"items": [{"id": "a\\"b"}]}', "prose {like this} ", '{"a": {"b": "}"}}']
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert _first_json_object(text) == scanned_json_object(text), text
