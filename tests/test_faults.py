"""The fault matrix: every model fault x every path x once / always, and bad recommend inputs.

Each cell runs against the OpenAI-compatible test server on 127.0.0.1 with the real ChatOpenAI
client (tests/support/fault_matrix.py). Every outcome must be a valid answer (a permutation of the
candidates, a propagation applied, a validated rule set, a chat reply) or a clear error; nothing is
lost; and the guard's work shows in the usage: a retry for a transport fault served once, a repair
for a malformed reply served once (or a ranking with wrong ids), a fallback when the fault persists.
The last test runs `doctor` on the store the matrix wrote to.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from graph.chat import build_chat_graph, checkpoint_serde
from memory_store.workspace import Workspace, register_workspace
from schemas.context import MemRecContext
from services.doctor import check_workspace
from tests.support import fault_matrix as fm
from tests.support.fixtures import DATASET, base_workspace
from tests.support.openai_server import OpenAITestServer, RecordedRequest, Reply

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def matrix_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, str]]:
    home = tmp_path_factory.mktemp("faults")
    ws = base_workspace().clone(Path(home) / "clone")
    register_workspace(ws, DATASET, home=str(home))
    yield ws, str(home)
    ws.events.close()


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    with fm.fast_guard(), OpenAITestServer() as srv:
        yield srv


@pytest.fixture
def llm_ctx(matrix_ws: tuple[Workspace, str], server: OpenAITestServer) -> MemRecContext:
    _, home = matrix_ws
    base = MemRecContext(dataset=DATASET, home=home, roles="offline")
    return fm.llm_context(base, server, fm.TIMEOUT_S)


def _check_effect(cell: fm.Cell, effect: str) -> None:
    u = cell.usage
    if effect == "retry":
        assert u.retries >= 1 and u.fallbacks == 0, u
    elif effect == "repair":
        assert u.repairs >= 1 and u.fallbacks == 0, u
    elif effect == "fallback":
        assert u.fallbacks >= 1, u
    else:
        assert (u.retries, u.repairs, u.fallbacks) == (0, 0, 0), u


def _check_chat_effect(cell: fm.Cell, effect: str) -> None:
    """The counter the fault must raise in a chat turn's usage (understand + recommend + respond).

    The test server has no reading for understand (it answers ``{"answer": "ok"}``), so every
    turn also shows understand's repair and fallback: only the expected counter is checked. A
    persistent fault makes at least two steps fall back (understand and respond, or rank); a
    timeout served once makes its one step fall back (a local endpoint's timeout is not retried).
    """
    u = cell.usage
    if effect == "retry":
        assert u.retries >= 1, u
    elif effect == "repair":
        assert u.repairs >= 1, u
    elif effect == "fallback":
        assert u.fallbacks >= (2 if cell.mode == "always" else 1), u
        if cell.mode == "once":
            assert u.errors.get("timeout", 0) >= 1 and u.retries == 0, u
    else:
        assert u.retries == 0, u


KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}  # (fault, path, mode) -> why it fails


def _cells() -> list[object]:
    return [
        pytest.param(
            f,
            p,
            m,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[(f, p, m)])]
            if (f, p, m) in KNOWN_FAILURES
            else [],
            id=f"{f}-{p}-{m}",
        )
        for f in fm.FAULTS
        for p in fm.PATHS
        for m in fm.MODES
    ]


@pytest.mark.parametrize(("fault", "path", "mode"), _cells())
async def test_fault_cell(
    matrix_ws: tuple[Workspace, str],
    llm_ctx: MemRecContext,
    server: OpenAITestServer,
    fault: str,
    path: str,
    mode: str,
) -> None:
    ws, _ = matrix_ws
    cell = await fm.run_cell(ws, llm_ctx, server, fault, path, mode)
    assert cell.crashes == 0 and cell.clear_errors == 0, cell.errors
    assert cell.valid == cell.runs == 1
    assert cell.lost == 0
    assert cell.hits >= 1, "the fault was never served: the path made no model call"
    check = _check_chat_effect if path == "chat" else _check_effect
    check(cell, fm.expected_effect(fault, mode, path))
    assert cell.usage.calls >= 1


async def test_retry_after_is_honoured(
    matrix_ws: tuple[Workspace, str], llm_ctx: MemRecContext, server: OpenAITestServer
) -> None:
    ws, _ = matrix_ws
    server.clear()
    server.script(Reply.error(429, retry_after="0.4"))  # the first call (synthesize)
    started = time.perf_counter()
    lost, usage = await fm.run_recommend(ws, llm_ctx, "7")
    assert time.perf_counter() - started >= 0.4
    assert lost == 0 and usage.retries == 1 and usage.fallbacks == 0


READING = {
    "intent": "recommend",
    "request": "a comedy",
    "constraints": {"include": ["Comedy"], "exclude": [], "decades": []},
    "feedback": [],
}


async def test_chat_turn_reports_its_usage_and_survives_an_empty_reply(
    llm_ctx: MemRecContext, server: OpenAITestServer
) -> None:
    served: Counter[str] = Counter()

    def handler(request: RecordedRequest) -> Reply | None:
        served[request.task or ""] += 1
        if request.task == "understand":  # a 500 first, then a valid reading
            return Reply.error(500) if served["understand"] == 1 else Reply(json.dumps(READING))
        if request.task == "respond":
            return Reply(fault="empty_choices")  # the streamed reply has no choices
        return None

    graph = build_chat_graph().compile(checkpointer=InMemorySaver(serde=checkpoint_serde()))
    config: Any = {"configurable": {"thread_id": "usage"}}
    turns = [HumanMessage("recommend me a good comedy"), HumanMessage("another comedy please")]
    server.clear()
    server.handler = handler
    try:
        outs = [
            await graph.ainvoke({"messages": [m], "user_id": "1"}, config, context=llm_ctx)
            for m in turns
        ]
    finally:
        server.handler = None
    first, second = outs
    assert first["messages"][-1].text.startswith("Here are my picks (Comedy):")
    understood, responded = first["usage"]["understand"], first["usage"]["respond"]
    assert (understood.calls, understood.retries, understood.repairs) == (1, 1, 0)
    assert understood.fallbacks == 0 and understood.tokens_in > 0
    assert (responded.calls, responded.fallbacks) == (1, 1)
    assert "rank" in first["usage"]
    # the next turn's usage replaces this one's (it is not summed over the conversation)
    assert second["usage"]["understand"].retries == 0
    assert second["usage"]["respond"].calls == 1 and served["respond"] == 2


@pytest.mark.parametrize("name", list(fm.BAD_INPUTS))
async def test_bad_input_gets_a_clear_answer(matrix_ws: tuple[Workspace, str], name: str) -> None:
    ws, home = matrix_ws
    ctx = MemRecContext(dataset=DATASET, home=home, roles="offline")
    result = await fm.run_bad_input(ws, ctx, name)
    assert result.outcome in ("clear error", "valid"), result
    assert result.recorded == 0
    if name == "request 100k chars":
        assert result.outcome == "valid" and "truncated" in result.detail
    elif name != "user_id a list":  # coerced to the string "['1']": a new user -> clear error
        assert result.outcome == "clear error", result
        assert len(result.detail) > 20


def test_store_is_consistent_after_the_matrix(matrix_ws: tuple[Workspace, str]) -> None:
    ws, _ = matrix_ws
    report = check_workspace(ws)
    assert report.ok, report.problems
    assert report.counts["interactions_logged"] >= 2 * len(fm.FAULTS)  # propagate cells
    assert report.counts["jobs_done"] == report.counts["interactions_logged"]
