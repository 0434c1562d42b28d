"""The LLM roles against the test server's real-server modes (llama-cpp-python as measured).

Each test puts a role, configured the way a user would (``local`` = any OpenAI-compatible server
on this machine, with its defaults: streamed calls, one at a time, timeouts not retried), in front
of one emulated behaviour and checks what the user gets: a valid answer or an announced fallback,
never a crash; the token cap on every request; the negotiated structured-output mode remembered;
the chat reply checked before it is shown.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from prompts.blocks import data_block, json_lines
from roles.chat_reply import write_reply
from roles.client import forget_endpoints
from roles.llm_roles import LLMLLMRec, LLMLMMem, task_tokens
from roles.models import make_model_client
from roles.notices import fallback_notice
from roles.settings import LOCAL_SERVER, role_settings
from schemas.context import MemRecContext
from schemas.model_spec import ModelSpec
from tests.support.openai_server import OpenAITestServer, Reply, ServerMode
from tests.test_llm_roles import CANDIDATES, PROP, RANK, SYNTH, FakeLLMRec, FakeLMMem

# In the unit lane on purpose: the emulation server starts in-process in milliseconds.

IDS = [c.item_id for c in CANDIDATES]


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    forget_endpoints()  # what was learned about an endpoint is per process
    yield
    forget_endpoints()


def _local(server: OpenAITestServer, **settings: Any):
    """The ``local`` provider on the test server, with its defaults (changed by ``settings``)."""
    spec = f"local@{server.url}/v1"
    chosen = LOCAL_SERVER if not settings else _replace(LOCAL_SERVER, **settings)
    return make_model_client(spec, chosen)


def _replace(base: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(base, **changes)


def _ranker(server: OpenAITestServer, **settings: Any) -> LLMLLMRec:
    return LLMLLMRec(_local(server, **settings), FakeLLMRec(), seed=0)


def _lmmem(server: OpenAITestServer, **settings: Any) -> LLMLMMem:
    return LLMLMMem(_local(server, **settings), FakeLMMem(), seed=0)


def _completions(server: OpenAITestServer) -> list[dict[str, Any]]:
    """Bodies of the MemRec task requests (the one-token system-message probes left out)."""
    return [r.body for r in server.chat_requests() if r.task is not None]


def _served(server: OpenAITestServer) -> list[dict[str, Any]]:
    """The task requests past negotiation (llama.cpp refuses json_schema once per endpoint)."""
    return [b for b in _completions(server) if _kind(b) != "json_schema"]


def _kind(body: dict[str, Any]) -> str | None:
    return (body.get("response_format") or {}).get("type")


# --- finish_reason "length": never a crash ----------------------------------------------------


async def test_runaway_model_cut_at_max_tokens_is_repaired_then_falls_back_with_the_reason():
    """No grammar: the model never stops; the cap cuts it, the guard asks once, then falls back."""
    mode = ServerMode.llama_cpp(grammar=False, runaway_after=4000)
    with OpenAITestServer(mode=mode) as server:
        out = await _ranker(server).rank(RANK)
        bodies = _completions(server)
    assert [_kind(b) for b in bodies] == ["json_schema", "json_object", "json_object"]
    assert sorted(i.item_id for i in out.value.items) == sorted(IDS)  # a valid answer anyway
    budget = task_tokens("rank", len(CANDIDATES))
    assert [b["max_tokens"] for b in bodies] == [budget] * 3  # llama.cpp's field, each call
    assert all("max_completion_tokens" not in b for b in bodies)
    assert out.usage.errors.get("length") == 2 and out.usage.repairs == 1
    assert out.usage.fallbacks == 1
    assert out.usage.fallback_reason == f"the reply was cut off at {budget} tokens twice"
    assert "shorter" in bodies[2]["messages"][-1]["content"]  # the repair says what went wrong
    notice = fallback_notice("rank", out.usage)
    assert notice is not None and "cut off" in notice and "offline role did" in notice


async def test_length_on_a_plain_openai_like_server_does_not_crash():
    mode = ServerMode(runaway_after=4000)  # OpenAI-like, json_schema accepted, no grammar
    with OpenAITestServer(mode=mode) as server:
        out = await _lmmem(server).propagate(PROP)
    assert out.value.user_memory == "offline reflection"
    assert out.usage.errors.get("length") == 2 and out.usage.fallbacks == 1


async def test_grammar_constrained_answers_are_valid_first_time():
    """llama.cpp with a grammar (json_object + schema): schema-valid first answers."""
    with OpenAITestServer(mode=ServerMode.llama_cpp()) as server:
        ranker, lmmem = _ranker(server), _lmmem(server)
        outs = [await ranker.rank(RANK), await lmmem.synthesize(SYNTH), await lmmem.propagate(PROP)]
    assert all(o.usage.fallbacks == 0 and o.usage.repairs == 0 for o in outs)
    assert [i.item_id for i in outs[0].value.items] == IDS


async def test_the_grammar_schema_bounds_strings_and_lists_but_validation_does_not():
    """A grammar closes each string and list in time; a longer answer without one still counts."""
    import json

    from roles.structured import strict_schema
    from schemas.records import GRAMMAR_BOUNDS, RankedItem, Ranking

    with OpenAITestServer(mode=ServerMode.llama_cpp()) as server:
        await _ranker(server).rank(RANK)
        sent = [
            b["response_format"]["schema"]
            for b in _completions(server)
            if "schema" in (b.get("response_format") or {})
        ]
    item = sent[0]["properties"]["items"]["items"]["properties"]
    assert item["rationale"]["maxLength"] == GRAMMAR_BOUNDS["rationale"]
    assert item["evidence"]["maxItems"] == 2
    assert item["evidence"]["items"]["maxLength"] == GRAMMAR_BOUNDS["name"]  # a facet name fits
    assert "maxLength" not in item["item_id"]  # any indexed id stays writable
    assert "maxLength" not in json.dumps(strict_schema(Ranking))  # OpenAI strict rejects them
    long = RankedItem(item_id="1", score=1.0, rationale="x" * 1000, evidence=["e" * 100] * 5)
    assert len(long.rationale) == 1000 and len(long.evidence) == 5


# --- structured output negotiated per endpoint --------------------------------------------------


async def test_json_schema_refused_with_500_moves_to_json_object_schema_and_is_remembered():
    with OpenAITestServer(mode=ServerMode.llama_cpp()) as server:
        ranker = _ranker(server)
        first = await ranker.rank(RANK)
        second = await ranker.rank(RANK)
        kinds = [(b.get("response_format") or {}).get("type") for b in _completions(server)]
        schemas = ["schema" in (b.get("response_format") or {}) for b in _completions(server)]
    # the refused json_schema once, then json_object with the schema (a grammar), remembered
    assert kinds == ["json_schema", "json_object", "json_object"]
    assert schemas == [False, True, True]
    assert first.usage.errors == {"status": 1} and first.usage.retries == 0
    assert first.usage.fallbacks == 0 and first.usage.output_mode == "json_object_schema"
    assert second.usage.errors == {} and second.usage.output_mode == "json_object_schema"


async def test_forced_tool_call_when_json_object_schema_is_refused_too():
    def handler(request: Any) -> Reply | None:
        response_format = request.body.get("response_format") or {}
        if "schema" in response_format or response_format.get("type") == "json_schema":
            return Reply(status=400, body={"error": {"message": "response_format not supported"}})
        return None

    with OpenAITestServer(handler, mode=ServerMode.llama_cpp()) as server:
        out = await _ranker(server).rank(RANK)
        last = _completions(server)[-1]
    assert last["tool_choice"] == {"type": "function", "function": {"name": "Ranking"}}
    assert out.usage.output_mode == "tool" and out.usage.fallbacks == 0
    assert [i.item_id for i in out.value.items] == IDS


async def test_wrong_shape_answer_is_repaired_with_the_schema():
    with OpenAITestServer(mode=ServerMode(reply="wrong_shape", json_schema="refuse")) as server:
        client = make_model_client(
            f"openai-compatible:m@{server.url}/v1",
            _replace(LOCAL_SERVER, probe_system=False, stream=False),
        )
        client.endpoint.mode_index = 3  # plain json_object: the model picks its own shape
        out = await LLMLLMRec(client, FakeLLMRec(), seed=0).rank(RANK)
    assert out.usage.errors.get("malformed", 0) >= 1 and out.usage.repairs >= 1
    assert sorted(i.item_id for i in out.value.items) == sorted(IDS)


# --- system messages dropped: detected once, instructions moved into the user message ----------


async def test_dropped_system_messages_are_detected_and_merged_into_the_user_message():
    with OpenAITestServer(mode=ServerMode.llama_cpp(drop_system=True)) as server:
        out = await _ranker(server).rank(RANK)
        (body,) = _served(server)
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"].startswith("TASK: rank")
    assert out.usage.fallbacks == 0 and [i.item_id for i in out.value.items] == IDS


# --- timeouts: bounded, not retried identically against a local server -------------------------


async def test_timeout_on_a_local_server_is_not_retried_and_the_fallback_says_so():
    with OpenAITestServer(mode=ServerMode.llama_cpp()) as server:
        server.script(Reply(delay_s=3.0))
        ranker = _ranker(server, timeout_s=0.5, probe_system=False)
        started = time.perf_counter()
        out = await ranker.rank(RANK)
        elapsed = time.perf_counter() - started
        n = len(_served(server))
    assert n == 1 and elapsed < 2.5  # one request, abandoned at the deadline, never sent again
    assert out.usage.errors == {"status": 1, "timeout": 1}  # json_schema refused, then the wait
    assert out.usage.retries == 0
    assert out.usage.fallback_reason == "timeout after 0.5 s" and out.usage.tokens_in > 0
    assert "timeout after 0.5 s" in (fallback_notice("rank", out.usage) or "")


def test_timeout_and_caps_from_the_environment_and_per_role(monkeypatch):
    monkeypatch.setenv("MEMREC_TIMEOUT_S", "900")
    monkeypatch.setenv("MEMREC_MAX_TOKENS", "400")
    monkeypatch.setenv("MEMREC_ROLE_SETTINGS", '{"llmrec": {"timeout_s": 60, "retries": 0}}')
    ctx = MemRecContext(roles="local")
    spec = ModelSpec.parse("local@http://127.0.0.1:9/v1")
    lmmem, llmrec = role_settings(ctx, "lmmem", spec), role_settings(ctx, "llmrec", spec)
    assert (lmmem.timeout_s, lmmem.max_tokens, lmmem.retry_timeouts) == (900.0, 400, False)
    assert (llmrec.timeout_s, llmrec.retries) == (60.0, 0)
    assert lmmem.cap(task_tokens("rules")) == 400 and lmmem.cap(100) == 100
    monkeypatch.setenv("MEMREC_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="MEMREC_TIMEOUT_S='soon' is not a number"):
        MemRecContext()


# --- the streamed chat reply: capped, deadline, checked ----------------------------------------

TITLES = ["Heat (1995)", "Ronin (1998)"]
PICKS = json_lines([{"title": t, "rationale": "Tense heist."} for t in TITLES])
REPLY_PROMPT = [
    SystemMessage(content="TASK: respond\nRewrite the draft as a friendly reply."),
    HumanMessage(content="Picks:\n" + data_block("PICKS", PICKS)),
]


async def test_chat_reply_is_streamed_with_max_tokens_and_usage_estimated():
    with OpenAITestServer(mode=ServerMode.llama_cpp()) as server:
        text, usage = await write_reply(
            _local(server, probe_system=False), REPLY_PROMPT, max_tokens=300, titles=TITLES
        )
        (body,) = _completions(server)
    assert body["stream"] is True and body["max_tokens"] == 300
    assert text is not None and "Heat" in text and usage.fallbacks == 0
    assert usage.estimated and usage.tokens_in > 0 and usage.tokens_out > 0  # no stream usage


async def test_chat_reply_echoing_the_prompt_is_not_shown():
    with OpenAITestServer(mode=ServerMode.llama_cpp(reply="echo")) as server:
        text, usage = await write_reply(
            _local(server, probe_system=False), REPLY_PROMPT, max_tokens=300, titles=TITLES
        )
    assert text is None and usage.fallbacks == 1
    assert usage.fallback_reason == "the reply repeats the prompt's data blocks or instructions"
    assert "so the template did" in (fallback_notice("respond", usage) or "")


async def test_chat_reply_runaway_is_stopped_by_the_deadline():
    mode = ServerMode.llama_cpp(runaway_after=100_000, token_latency_s=0.01)
    with OpenAITestServer(mode=mode) as server:
        started = time.perf_counter()
        text, usage = await write_reply(
            _local(server, probe_system=False, timeout_s=0.5),
            REPLY_PROMPT,
            max_tokens=5000,
            titles=TITLES,
        )
        elapsed = time.perf_counter() - started
        time.sleep(0.2)
        generations = list(server.generations)
    assert text is None and usage.errors == {"timeout": 1} and elapsed < 2.0
    assert generations and generations[-1].outcome == "cancelled"  # the stream stopped the model


async def test_an_openai_spec_sent_to_another_server_gets_max_tokens(monkeypatch):
    """``openai:`` with OPENAI_BASE_URL at llama.cpp (which ignores max_completion_tokens)."""
    with OpenAITestServer(mode=ServerMode.llama_cpp()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        client = make_model_client("openai:gpt-4o-mini", api_key="x")
        out = await LLMLLMRec(client, FakeLLMRec(), seed=0).rank(RANK)
        bodies = _served(server)
    assert bodies and all(b["max_tokens"] > 0 for b in bodies)
    assert all("max_completion_tokens" not in b for b in bodies)
    assert out.usage.fallbacks == 0 and [i.item_id for i in out.value.items] == IDS
    assert make_model_client("openai:gpt-4o", api_key="x")._max_key == "max_tokens"  # env URL
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert make_model_client("openai:gpt-4o", api_key="x")._max_key == "max_completion_tokens"


def test_no_grammar_bound_exceeds_what_llama_cpp_parses() -> None:
    """llama.cpp's grammar parser rejects long repetitions ("number of rules that are going to be
    repeated ... exceeds sane defaults"): a 1,200-character bound took the lane's server down."""
    import json

    from roles.structured import plain_schema
    from schemas.chat_state import Understanding
    from schemas.records import MAX_GRAMMAR_LENGTH, FacetSet, PropagationResult, Ranking
    from schemas.ruleset import RuleSet

    for model in (Ranking, FacetSet, PropagationResult, RuleSet, Understanding):
        text = json.dumps(plain_schema(model))
        bounds = [int(n) for n in re.findall(r'"max(?:Length|Items)": (\d+)', text)]
        assert all(n <= MAX_GRAMMAR_LENGTH for n in bounds), (model.__name__, bounds)
