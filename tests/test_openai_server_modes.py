"""The test server's real-server modes, each checked with the real ``openai`` client.

Each mode reproduces what llama-cpp-python 0.3.36's server was measured to do with SmolLM2-135M
and Gemma 3 270M (/work/briefs/realmodel-findings.md), so the client-side handling can be tested
without building llama.cpp: json_schema refused with a 500 while json_object (+ schema) and forced
tool calls work, no usage in streams, max_completion_tokens ignored and finish_reason "length",
one generation at a time with abandoned non-streamed requests still generated, system messages
dropped, the prompt echoed back, and answers in the wrong JSON shape.
"""

from __future__ import annotations

import asyncio
import json
import os

import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from prompts.blocks import data_block, json_lines
from prompts.tokens import count_tokens
from schemas.records import Ranking
from tests.support.fixtures import data_dir, needs_data
from tests.support.openai_server import OpenAITestServer, Reply, ServerMode

pytestmark = pytest.mark.integration

CANDIDATES = ["i1", "i2", "i3"]
SYSTEM = "TASK: rank\nRank every candidate. Answer with JSON."
USER = "Candidates:\n" + data_block(
    "CANDIDATES", json_lines([{"item_id": i, "title": f"Film {i}"} for i in CANDIDATES])
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
SCHEMA = Ranking.model_json_schema()
TOOLS = [{"type": "function", "function": {"name": "Ranking", "parameters": SCHEMA}}]
NAMED = {"type": "function", "function": {"name": "Ranking"}}
WORDS = ("alpha", "beta", "gamma", "delta")
LONG = Reply(content=" ".join(WORDS[n % 4] for n in range(100)))  # 100 tokens


def client(server: OpenAITestServer, timeout: float = 10.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=timeout)


def aclient(server: OpenAITestServer, timeout: float = 10.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=timeout
    )


def ranked_ids(text: str | None) -> list[str]:
    return [item.item_id for item in Ranking.model_validate_json(text or "").items]


def test_llama_cpp_refuses_json_schema_with_500_and_serves_json_object_and_tools():
    with OpenAITestServer(mode=ServerMode.llama_cpp()) as server:
        api = client(server)
        json_schema = {"type": "json_schema", "json_schema": {"name": "Ranking", "schema": SCHEMA}}
        with pytest.raises(openai.InternalServerError) as refused:
            api.chat.completions.create(model="m", messages=MESSAGES, response_format=json_schema)
        assert refused.value.status_code == 500
        assert "Input should be 'text' or 'json_object'" in refused.value.message

        for response_format in ({"type": "json_object"}, {"type": "json_object", "schema": SCHEMA}):
            done = api.chat.completions.create(
                model="m",
                messages=MESSAGES,
                response_format=response_format,  # type: ignore[arg-type]
            )
            assert ranked_ids(done.choices[0].message.content) == CANDIDATES

        forced = api.chat.completions.create(
            model="m", messages=MESSAGES, tools=TOOLS, tool_choice=NAMED
        ).choices[0]
        assert forced.finish_reason == "tool_calls" and forced.message.content is None
        call = forced.message.tool_calls[0]
        assert call.function.name == "Ranking"
        assert ranked_ids(call.function.arguments) == CANDIDATES

        # tool_choice "required" (and "auto") is not honoured: the model answers in text.
        required = api.chat.completions.create(
            model="m", messages=MESSAGES, tools=TOOLS, tool_choice="required"
        ).choices[0]
        assert required.message.tool_calls is None
        assert ranked_ids(required.message.content) == CANDIDATES
        assert server.calls["rank"] == 5  # the refused request reached the server too


def test_openai_like_default_accepts_json_schema_and_required_tool_choice():
    with OpenAITestServer() as server:
        api = client(server)
        json_schema = {"type": "json_schema", "json_schema": {"name": "Ranking", "schema": SCHEMA}}
        done = api.chat.completions.create(
            model="m", messages=MESSAGES, response_format=json_schema
        )
        assert ranked_ids(done.choices[0].message.content) == CANDIDATES
        required = api.chat.completions.create(
            model="m", messages=MESSAGES, tools=TOOLS, tool_choice="required"
        ).choices[0]
        assert ranked_ids(required.message.tool_calls[0].function.arguments) == CANDIDATES


def test_stream_usage_missing_even_when_asked_for():
    for mode, expect_usage in ((ServerMode.llama_cpp(), False), (ServerMode(), True)):
        with OpenAITestServer(mode=mode) as server:
            api = client(server)
            chunks = list(
                api.chat.completions.create(
                    model="m",
                    messages=MESSAGES,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert ranked_ids(text) == CANDIDATES
            usage = [c.usage for c in chunks if c.usage is not None]
            assert bool(usage) is expect_usage
            # a non-streamed completion reports usage on both
            done = api.chat.completions.create(model="m", messages=MESSAGES)
            assert done.usage is not None and done.usage.prompt_tokens > 0


def test_runaway_model_stops_only_at_max_tokens_and_ignores_max_completion_tokens():
    with OpenAITestServer(mode=ServerMode.llama_cpp(runaway_after=300)) as server:
        api = client(server)
        capped = api.chat.completions.create(model="m", messages=MESSAGES, max_tokens=20)
        choice = capped.choices[0]
        assert choice.finish_reason == "length"
        assert capped.usage is not None and 15 <= capped.usage.completion_tokens <= 20
        assert (choice.message.content or "").startswith('{"items"')
        with pytest.raises(json.JSONDecodeError):
            json.loads(choice.message.content or "")

        # what langchain-openai sends: llama-cpp-python ignores it, the model runs to its limit
        ignored = api.chat.completions.create(
            model="m", messages=MESSAGES, max_completion_tokens=20
        )
        assert ignored.choices[0].finish_reason == "length"
        assert ignored.usage is not None and ignored.usage.completion_tokens > 250
        with pytest.raises(json.JSONDecodeError):
            json.loads(ignored.choices[0].message.content or "")  # the JSON never closes

        with pytest.raises(openai.LengthFinishReasonError):
            api.chat.completions.parse(
                model="m", messages=MESSAGES, max_tokens=20, response_format={"type": "json_object"}
            )

        chunks = list(
            api.chat.completions.create(model="m", messages=MESSAGES, max_tokens=20, stream=True)
        )
        assert [c.choices[0].finish_reason for c in chunks][-1] == "length"


def test_max_tokens_truncates_a_forced_tool_call_reported_as_tool_calls():
    for mode, finish in ((ServerMode.llama_cpp(), "tool_calls"), (ServerMode(), "length")):
        with OpenAITestServer(mode=mode) as server:
            choice = (
                client(server)
                .chat.completions.create(
                    model="m", messages=MESSAGES, tools=TOOLS, tool_choice=NAMED, max_tokens=10
                )
                .choices[0]
            )
            assert choice.finish_reason == finish
            with pytest.raises(json.JSONDecodeError):
                json.loads(choice.message.tool_calls[0].function.arguments)


async def test_langchain_openai_with_json_mode_raises_length_error_on_a_runaway_model():
    """The project's call (ChatOpenAI bound to json_object) meets a model that fills its context."""
    with OpenAITestServer(mode=ServerMode.llama_cpp(runaway_after=200)) as server:
        model = ChatOpenAI(
            base_url=server.url + "/v1",
            api_key="x",  # type: ignore[arg-type]
            model="m",
            max_retries=0,
            max_tokens=20,  # sent as max_completion_tokens, which this server ignores
            use_responses_api=False,
        ).bind(response_format={"type": "json_object"})
        with pytest.raises(openai.LengthFinishReasonError):
            await model.ainvoke([SystemMessage(SYSTEM), HumanMessage(USER)])
        assert server.requests[-1].body.get("max_completion_tokens") == 20
        assert server.generations[-1].tokens > 150


def test_system_messages_dropped_lose_the_instructions():
    with OpenAITestServer(mode=ServerMode(drop_system=True)) as server:
        done = client(server).chat.completions.create(model="m", messages=MESSAGES)
        assert done.usage is not None and done.usage.prompt_tokens == count_tokens(USER)
        answer = json.loads(done.choices[0].message.content or "")
        assert "items" not in answer  # without the TASK line the model does not rank
        assert server.calls["rank"] == 1  # the client did send the task
    with OpenAITestServer() as server:
        done = client(server).chat.completions.create(model="m", messages=MESSAGES)
        assert done.usage is not None
        assert done.usage.prompt_tokens == count_tokens(SYSTEM) + count_tokens(USER)


def test_echo_mode_replies_with_the_prompt():
    with OpenAITestServer(mode=ServerMode.llama_cpp(reply="echo", drop_system=True)) as server:
        api = client(server)
        done = api.chat.completions.create(model="m", messages=MESSAGES)
        assert done.choices[0].message.content == USER
        capped = api.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)
        assert capped.choices[0].finish_reason == "length"
        text = capped.choices[0].message.content or ""
        assert text and USER.startswith(text) and text != USER


def test_wrong_shape_answers_an_item_instead_of_the_list():
    with OpenAITestServer(mode=ServerMode(reply="wrong_shape")) as server:
        api = client(server)
        answer = json.loads(
            api.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
            or ""
        )
        assert "items" not in answer and answer["item_id"] == CANDIDATES[0]
    with OpenAITestServer() as server:  # the same shape as a one-off scripted fault
        server.script(Reply(fault="wrong_shape"))
        api = client(server)
        first = api.chat.completions.create(model="m", messages=MESSAGES).choices[0].message
        second = api.chat.completions.create(model="m", messages=MESSAGES).choices[0].message
        assert json.loads(first.content or "")["item_id"] == CANDIDATES[0]
        assert ranked_ids(second.content) == CANDIDATES


@pytest.mark.slow
async def test_single_slot_serves_one_generation_at_a_time():
    mode = ServerMode.llama_cpp(token_latency_s=0.003)  # 100 tokens: 0.3 s each
    with OpenAITestServer(mode=mode) as server:
        server.script(LONG, LONG, LONG)
        api = aclient(server)
        done = await asyncio.gather(
            *(api.chat.completions.create(model="m", messages=MESSAGES) for _ in range(3))
        )
        assert all(d.choices[0].finish_reason == "stop" for d in done)
        spans = sorted((g.started, g.ended) for g in server.generations)
        assert len(spans) == 3 and all(g.tokens == 100 for g in server.generations)
        assert all(spans[n][1] <= spans[n + 1][0] for n in range(2))  # never two at once


@pytest.mark.slow
async def test_abandoned_request_in_flight_still_holds_the_slot():
    mode = ServerMode.llama_cpp(token_latency_s=0.01)  # 100 tokens: 1 s
    with OpenAITestServer(mode=mode) as server:
        server.script(LONG)
        with pytest.raises(openai.APITimeoutError):
            await aclient(server, timeout=0.3).chat.completions.create(model="m", messages=MESSAGES)
        done = await aclient(server).chat.completions.create(model="m", messages=MESSAGES)
        assert ranked_ids(done.choices[0].message.content) == CANDIDATES
        abandoned, answered = server.generations
        assert (abandoned.outcome, abandoned.tokens) == ("finished", 100)  # generated in full
        assert answered.started >= abandoned.ended  # the next request waited for it


@pytest.mark.slow
async def test_abandoned_request_still_queued_is_skipped():
    mode = ServerMode.llama_cpp(token_latency_s=0.006)  # 100 tokens: 0.6 s
    with OpenAITestServer(mode=mode) as server:
        server.script(LONG, LONG)
        api = aclient(server)
        first = asyncio.create_task(api.chat.completions.create(model="m", messages=MESSAGES))
        await asyncio.sleep(0.1)
        with pytest.raises(openai.APITimeoutError):  # queued behind the first, then given up
            await aclient(server, timeout=0.2).chat.completions.create(model="m", messages=MESSAGES)
        third = await api.chat.completions.create(model="m", messages=MESSAGES)
        await first
        assert ranked_ids(third.choices[0].message.content) == CANDIDATES
        by_request = {g.request: g for g in server.generations}
        assert (by_request[0].outcome, by_request[0].tokens) == ("finished", 100)
        assert (by_request[1].outcome, by_request[1].tokens) == ("skipped", 0)  # never generated
        assert by_request[2].outcome == "finished"
        assert by_request[2].started >= by_request[0].ended


@pytest.mark.slow
async def test_abandoned_stream_is_cancelled_and_frees_the_slot():
    mode = ServerMode.llama_cpp(token_latency_s=0.02)  # 100 tokens: 2 s if streamed in full
    with OpenAITestServer(mode=mode) as server:
        server.script(LONG)
        stream = await aclient(server).chat.completions.create(
            model="m", messages=MESSAGES, stream=True
        )
        async for _chunk in stream:
            break
        await stream.close()
        done = await aclient(server).chat.completions.create(model="m", messages=MESSAGES)
        assert ranked_ids(done.choices[0].message.content) == CANDIDATES
        cancelled, answered = server.generations
        assert cancelled.outcome == "cancelled" and cancelled.tokens < 100
        assert answered.started - cancelled.started < 1.0  # well before the 2 s the stream needed


@pytest.mark.slow
def test_lane_capability_probe_reads_the_emulated_llama_cpp_server(tmp_path):
    """bench realmodel's capability step sees in the emulation what it saw in the real server."""
    from bench._realmodel_runtime import LaneConfig
    from bench._realmodel_steps import StepContext, step_capabilities

    config = LaneConfig(
        home=tmp_path, model="smollm2", steps=[], n_ctx=4096, budget_s=10, eval_users=1
    )
    found = {}
    for mode in (ServerMode.llama_cpp(runaway_after=50), ServerMode()):
        with OpenAITestServer(mode=mode) as server:
            ctx = StepContext(config, server.url + "/v1", tmp_path, tmp_path, tmp_path)
            assert step_capabilities(ctx).outcome == "ok"
            found[mode.json_schema] = ctx.endpoint
    llama, openai_like = found["refuse"], found["accept"]
    assert llama["json_schema"].startswith("HTTP 500")
    assert llama["json_object+schema"].startswith("text")
    assert llama["tool_choice named"].startswith("tool call")
    assert llama["tool_choice required"].startswith("text")
    assert llama["usage in streams"] == "missing"
    assert llama["max_tokens=8"].startswith("honoured")
    assert llama["max_completion_tokens=8"].startswith("ignored")
    assert llama["system message"].startswith("kept")
    assert openai_like["json_schema"].startswith("text")
    assert openai_like["tool_choice required"].startswith("tool call")
    assert openai_like["usage in streams"] == "reported"
    assert openai_like["max_completion_tokens=8"].startswith("honoured")


@pytest.mark.slow
async def test_lane_proxy_records_tokens_validity_and_abandoned_calls():
    """bench realmodel's recording proxy: what passed, what the server reported, who left."""
    from bench._model_proxy import RecordingProxy

    mode = ServerMode.llama_cpp(token_latency_s=0.005)  # LONG: 0.5 s
    with OpenAITestServer(mode=mode) as server, RecordingProxy(server.url) as proxy:
        api = openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0)
        await api.chat.completions.create(model="m", messages=MESSAGES)
        stream = await api.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert ranked_ids(text) == CANDIDATES
        server.script(LONG)
        with pytest.raises(openai.APITimeoutError):
            await api.chat.completions.create(model="m", messages=MESSAGES, timeout=0.2)
        await asyncio.sleep(0.6)  # the abandoned generation runs to its end
        plain, streamed, abandoned = proxy.take()
    assert (plain.task, plain.valid, plain.finish_reason) == ("rank", True, "stop")
    assert plain.server_in == plain.est_in == count_tokens(SYSTEM) + count_tokens(USER)
    assert plain.server_out == plain.est_out > 0
    assert (streamed.stream, streamed.valid, streamed.server_in) == (True, True, None)
    assert abandoned.client_gone and abandoned.status is None
    assert not plain.client_gone and not streamed.client_gone
    assert server.generations[-1].outcome == "finished" and server.generations[-1].tokens == 100


@pytest.mark.slow
@needs_data
def test_realmodel_lane_store_accepts_the_writing_steps(tmp_path) -> None:
    """The lane's store is built so that its ``memrec feedback`` step is not a second writer."""
    import subprocess
    import sys
    from pathlib import Path

    from bench.common import BenchOptions
    from bench.realmodel import _prepare_store

    home = tmp_path / "home"
    _prepare_store(BenchOptions(data_dir=data_dir(), home=tmp_path), home)
    exe = Path(sys.executable).parent / "memrec"
    ran = subprocess.run(
        [str(exe), "feedback", "--user", "1", "--item", "50", "--home", str(home), "--wait"],
        env={**os.environ, "LANGSMITH_TRACING": "false", "MEMREC_DATA_DIR": str(data_dir())},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "recorded interaction" in ran.stdout


LLAMA_LOG = """\
llama_perf_context_print: prompt eval time =       0.04 ms /    32 tokens (    0.00 ms per token)
llama_perf_context_print:        eval time =       0.00 ms /     1 runs   (    0.00 ms per token)
llama_perf_context_print:       total time =     470.52 ms /    33 tokens
INFO:     127.0.0.1:50222 - "POST /v1/chat/completions HTTP/1.1" 500 Internal Server Error
Llama.generate: 3 prefix-match hit, remaining 1549 prompt tokens to eval
llama_perf_context_print: prompt eval time =    7295.23 ms /  1549 tokens (    4.71 ms per token)
llama_perf_context_print:        eval time =    1549.33 ms /    58 runs   (   26.71 ms per token)
llama_perf_context_print:       total time =   13782.84 ms /  1607 tokens
"""


def test_lane_reads_token_counts_from_the_llama_server_log(tmp_path) -> None:
    """Streams carry no usage: the lane counts tokens from the server's own log lines."""
    from bench._model_proxy import CallRecord
    from bench._realmodel_runtime import server_log_tokens
    from bench._realmodel_steps import StepOutcome
    from bench.realmodel import step_row

    log = tmp_path / "step.log"
    log.write_text(LLAMA_LOG)
    logged = server_log_tokens(log)
    assert logged == [(32, 1), (3 + 1549, 58)]  # the cached prefix counts as prompt
    calls = [
        CallRecord(task=None, stream=False, est_in=30, est_out=1, status=200, latency_s=0.5),
        CallRecord(task="rules", stream=True, est_in=1300, est_out=50, status=200, latency_s=13.8),
    ]
    row = step_row("rules", StepOutcome("ok"), calls, 15.0, logged)
    assert (row.log_in, row.log_out) == (1552, 58)  # the one-token probe left out
    assert row.log_vs_est_in == round(1552 / 1300, 2)
    assert server_log_tokens(tmp_path / "missing.log") == []
