"""The fault matrix: every model fault x every path x once / always, plus bad inputs.

Used by tests/test_faults.py (one parametrized test per cell) and runnable on its own to write the
figures table: ``python -m tests.support.fault_matrix [--runs N] [--out FILE]`` prints a Markdown
table (fault, path, mode, runs, outcome, retries / repairs / fallbacks, lost).

Paths: ``synthesize`` and ``rank`` (the recommend graph, the fault hits that task's calls),
``propagate`` (the propagate graph on a recorded interaction), ``rules`` (LMMem.generate_rules on
the dataset's statistics; the rule set is not saved, the shared index must stay untouched) and
``chat`` (the chat graph, the fault hits every model call of the turn). Mode ``once``: the first
call of the task is faulty, later ones are served; ``always``: every call is faulty.

The guard is made fast for the matrix (``fast_guard``): backoff 10 ms, per-call timeout from the
run context; what it does is unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from pydantic import ValidationError

import roles.settings as role_settings
from memory_store.workspace import UnknownEntity, Workspace, register_workspace
from nodes.curate import InvalidRequest
from schemas.context import MemRecContext
from schemas.records import CallUsage
from tests.support.openai_server import OpenAITestServer, RecordedRequest, Reply

logger = logging.getLogger(__name__)

TIMEOUT_S = 0.8
TRANSPORT = ("http_429", "http_500", "http_503", "reset", "slow_first_byte")
MALFORMED = ("invalid_json", "truncated_json", "wrong_types", "empty_choices")
IDS = ("missing_ids", "duplicate_ids", "hallucinated_ids")
HARMLESS = ("prose_around", "latency", "slow_streaming")
FAULTS = (*TRANSPORT, *MALFORMED, *IDS, *HARMLESS)
PATHS = ("synthesize", "rank", "propagate", "rules", "chat")
MODES = ("once", "always")
CLEAR_ERRORS: tuple[type[BaseException], ...] = (InvalidRequest, UnknownEntity, ValidationError)


def fault_reply(fault: str, timeout_s: float = TIMEOUT_S) -> Reply:
    """The faulty reply for ``fault`` (see ``FAULTS``)."""
    if fault == "http_429":
        return Reply.error(429, retry_after="0.05")
    if fault in ("http_500", "http_503"):
        return Reply.error(int(fault[-3:]))
    if fault == "slow_first_byte":
        return Reply(delay_s=timeout_s + 0.4)
    if fault == "latency":
        return Reply(delay_s=timeout_s / 8)
    if fault == "slow_streaming":  # only a streamed completion is slowed (roles do not stream)
        return Reply(chunk_delay_s=timeout_s / 4)
    return Reply(fault=fault)  # type: ignore[arg-type]


def expected_effect(fault: str, mode: str, path: str) -> str:
    """What the guard must show in usage: retry, repair, fallback or none.

    The test server is on 127.0.0.1, a local endpoint: a timed-out call is not sent again there
    (``roles/settings.py``), so a slow first byte falls back even when served once.
    """
    if fault == "slow_first_byte":
        return "fallback"
    if fault in TRANSPORT:
        return "fallback" if mode == "always" else "retry"
    if fault in MALFORMED:
        return "fallback" if mode == "always" else "repair"
    if fault in IDS and path == "rank":
        return "repair"
    return "none"


class FaultHandler:
    """Serve ``fault`` to the calls of ``task`` (None = every task), once or always."""

    def __init__(self, fault: str, task: str | None, mode: str, timeout_s: float) -> None:
        self.fault, self.task, self.mode, self.timeout_s = fault, task, mode, timeout_s
        self.hits = 0
        self._lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply | None:
        """The faulty reply when this request is targeted, else None (served validly)."""
        if self.task is not None and request.task != self.task:
            return None
        with self._lock:
            if self.mode == "once" and self.hits:
                return None
            self.hits += 1
        return fault_reply(self.fault, self.timeout_s)


@dataclass
class Cell:
    """The tally of one (fault, path, mode)."""

    fault: str
    path: str
    mode: str
    runs: int = 0
    valid: int = 0
    clear_errors: int = 0
    crashes: int = 0
    lost: int = 0
    hits: int = 0  # faulty replies actually served
    usage: CallUsage = field(default_factory=CallUsage)
    errors: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``valid`` / ``clear error`` / ``crash`` (counts when mixed)."""
        parts = [
            f"{n} {name}"
            for n, name in ((self.valid, "valid"), (self.clear_errors, "clear error"))
            if n
        ]
        if self.crashes:
            parts.append(f"{self.crashes} CRASH")
        return ", ".join(parts) if len(parts) > 1 or self.crashes else parts[0].split(" ", 1)[1]


@contextlib.contextmanager
def fast_guard() -> Iterator[None]:
    """Backoff of 10 ms for every role built while active (the matrix would take minutes)."""
    names = ("HOSTED", "LOCAL", "LOCAL_SERVER")
    real = {name: getattr(role_settings, name) for name in names}
    for name, settings in real.items():
        setattr(role_settings, name, replace(settings, backoff_base_s=0.01))
    try:
        yield
    finally:
        for name, settings in real.items():
            setattr(role_settings, name, settings)


def llm_context(ctx: MemRecContext, server: OpenAITestServer, timeout_s: float) -> MemRecContext:
    """``ctx`` with both roles on the test server."""
    spec = f"openai-compatible:test-model@{server.url}/v1"
    return replace(ctx, roles="offline", lmmem=spec, llmrec=spec, timeout_s=timeout_s)


def _merged(usage: dict[str, CallUsage] | None) -> CallUsage:
    total = CallUsage()
    for value in (usage or {}).values():
        total = total.merged(value)
    return total


# ------------------------------------------------------------------------------------ paths


async def run_recommend(ws: Workspace, ctx: MemRecContext, user: str) -> tuple[int, CallUsage]:
    """One recommend run; returns (candidates lost, usage of synthesize + rank)."""
    from graph.recommend import graph
    from memory_store.facet_cache import facet_cache_for

    facet_cache_for(ws).clear()  # cached facets would skip the synthesize call under test
    candidates = [ws.dataset.item_ids[i] for i in ws.benchmark_candidates()[ws.user_code(user)]]
    inp: Any = {"user_id": user, "candidates": candidates}
    out = await graph.ainvoke(inp, context=ctx)  # type: ignore[call-overload]
    ranked = [r.item_id for r in out["ranking"]]
    if len(ranked) != len(set(ranked)) or not set(ranked) <= set(candidates):
        raise AssertionError(f"not a permutation of the candidates: {ranked}")
    if not all(r.rationale.strip() for r in out["ranking"]):
        raise AssertionError("a ranked item has no rationale")
    usage = {k: v for k, v in out["usage"].items() if k in ("synthesize", "rank")}
    return len(set(candidates) - set(ranked)), _merged(usage)


async def run_propagate(ws: Workspace, ctx: MemRecContext, user: str) -> tuple[int, CallUsage]:
    """Record an interaction and propagate it; lost = interaction not applied / not logged."""
    from graph.propagate import graph
    from nodes.record import record_interaction

    code = ws.user_code(user)
    seen = set(ws.graph.user_items(code).tolist())
    item = next(i for i in range(ws.dataset.n_items) if i not in seen)
    event = record_interaction(ws, user, ws.dataset.item_ids[item])
    out = await graph.ainvoke({"interaction_id": event.interaction_id}, context=ctx)
    report = out["report"]
    applied = ws.events.applied(event.interaction_id, "user", user)
    logged = ws.events.get_interaction(event.interaction_id) is not None
    job = ws.events.get_job(event.interaction_id)
    lost = int(not (applied and logged and ws.graph.has(code, item)))
    if job is None or job.status != "done":
        lost = 1
    return lost, report.usage


async def run_rules(ws: Workspace, ctx: MemRecContext, user: str) -> tuple[int, CallUsage]:
    """LMMem writes a rule set from the domain statistics (validated, not saved)."""
    from nodes.domain_stats import domain_stats
    from roles.factory import build_roles

    lmmem, _ = build_roles(ctx, ws)
    out = await lmmem.generate_rules(domain_stats(ws.dataset, ws.graph))
    type(out.value).model_validate(out.value.model_dump())
    return 0, out.usage


async def run_chat(ws: Workspace, ctx: MemRecContext, user: str) -> tuple[int, CallUsage]:
    """One chat turn asking for recommendations."""
    from langgraph.checkpoint.memory import InMemorySaver

    from graph.chat import build_chat_graph

    graph = build_chat_graph().compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": f"faults-{time.monotonic_ns()}"}}
    inp: Any = {"messages": [HumanMessage("recommend me a good comedy")], "user_id": user}
    out = await graph.ainvoke(inp, config=config, context=ctx)  # type: ignore[call-overload]
    reply = out["messages"][-1]
    if not isinstance(reply, AIMessage) or not reply.text.strip():
        raise AssertionError("the chat turn has no reply")
    ranked = [r.item_id for r in out.get("ranking") or []]
    unknown = [i for i in ranked if i not in ws.dataset.item_index]
    if unknown or len(ranked) != len(set(ranked)):
        raise AssertionError(f"chat ranking has unknown or repeated items: {ranked}")
    return 0, _merged(out.get("usage"))


PATH_RUNNERS: dict[str, tuple[str | None, Callable[..., Any]]] = {
    "synthesize": ("synthesize", run_recommend),
    "rank": ("rank", run_recommend),
    "propagate": ("propagate", run_propagate),
    "rules": ("rules", run_rules),
    "chat": (None, run_chat),
}


async def run_cell(
    ws: Workspace,
    ctx: MemRecContext,
    server: OpenAITestServer,
    fault: str,
    path: str,
    mode: str,
    *,
    runs: int = 1,
    users: tuple[str, ...] = ("1", "13", "42", "100", "250"),
) -> Cell:
    """Run ``runs`` times one cell of the matrix against ``server``; never raises."""
    task, runner = PATH_RUNNERS[path]
    cell = Cell(fault, path, mode)
    for n in range(runs):
        server.clear()
        handler = FaultHandler(fault, task, mode, ctx.timeout_s)
        server.handler = handler
        cell.runs += 1
        try:
            lost, usage = await runner(ws, ctx, users[n % len(users)])
        except CLEAR_ERRORS as err:
            cell.clear_errors += 1
            cell.errors.append(f"{type(err).__name__}: {err}")
            continue
        except Exception as err:  # noqa: BLE001 - the matrix tallies every failure
            cell.crashes += 1
            cell.errors.append(f"{type(err).__name__}: {err}")
            logger.exception("fault %s on %s (%s) crashed", fault, path, mode)
            continue
        finally:
            server.handler = None
            cell.hits += handler.hits
        cell.valid += 1
        cell.lost += lost
        cell.usage = cell.usage.merged(usage)
    return cell


# ------------------------------------------------------------------------------- bad inputs

BAD_INPUTS: dict[str, dict[str, Any]] = {
    "user_id missing": {},
    "user_id empty": {"user_id": "  "},
    "user_id 10k chars": {"user_id": "u" * 10_000},
    "user_id a list": {"user_id": ["1"]},
    "candidates empty": {"user_id": "1", "candidates": []},
    "candidates 201": {"user_id": "1", "candidates": [str(i) for i in range(1, 202)]},
    "candidates duplicated": {"user_id": "1", "candidates": ["1", "1"]},
    "candidates unknown": {"user_id": "1", "candidates": ["ghost-999"]},
    "candidates a string": {"user_id": "1", "candidates": "1,2,3"},
    "new user without candidates": {"user_id": "no-such-user"},
    "request 100k chars": {"user_id": "1", "candidates": ["1", "2"], "request": "x" * 100_000},
    "feedback unknown item": {
        "user_id": "1",
        "candidates": ["1", "2"],
        "feedback": [{"item_id": "ghost-999"}],
    },
    "feedback malformed": {"user_id": "1", "candidates": ["1", "2"], "feedback": [{"x": 1}]},
}


@dataclass
class BadInputResult:
    """How the recommend graph answered one bad input."""

    name: str
    outcome: str  # valid / clear error / crash
    detail: str
    recorded: int  # interactions written (must be 0 for a refused input)


async def run_bad_input(ws: Workspace, ctx: MemRecContext, name: str) -> BadInputResult:
    """Send one bad input to the recommend graph; classify the answer."""
    from graph.recommend import graph

    before = len(ws.events.interactions())
    try:
        bad: Any = dict(BAD_INPUTS[name])
        out = await graph.ainvoke(bad, context=ctx)  # type: ignore[call-overload]
    except CLEAR_ERRORS as err:
        outcome, detail = "clear error", f"{type(err).__name__}: {err}"[:160]
    except Exception as err:  # noqa: BLE001 - tallied
        outcome, detail = "crash", f"{type(err).__name__}: {err}"[:160]
    else:
        notes = "; ".join(out.get("notes") or [])
        outcome, detail = "valid", f"{len(out['ranking'])} ranked; {notes}"[:160]
    recorded = len(ws.events.interactions()) - before
    return BadInputResult(name, outcome, detail, recorded)


# ------------------------------------------------------------------------------------ table


def markdown(cells: list[Cell], bad: list[BadInputResult]) -> str:
    """The figures table."""
    lines = [
        "| fault | path | mode | runs | faulty replies | outcome | retries | repairs | fallbacks "
        "| lost |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        u = c.usage
        lines.append(
            f"| {c.fault} | {c.path} | {c.mode} | {c.runs} | {c.hits} | {c.outcome} | "
            f"{u.retries} | {u.repairs} | {u.fallbacks} | {c.lost} |"
        )
    lines += ["", "| bad input (recommend graph) | runs | outcome | detail | recorded |"]
    lines.append("|---|---|---|---|---|")
    for b in bad:
        detail = b.detail.replace("|", "/").replace("\n", " ")
        lines.append(f"| {b.name} | 1 | {b.outcome} | {detail} | {b.recorded} |")
    return "\n".join(lines)


async def run_matrix(
    runs: int, paths: tuple[str, ...] = PATHS
) -> tuple[list[Cell], list[BadInputResult]]:
    """Every cell and every bad input on an isolated clone of the indexed ml-100k store."""
    from tests.support.fixtures import DATASET, base_workspace

    home = Path(tempfile.mkdtemp(prefix="memrec-faults-"))
    ws = base_workspace().clone(home / "clone")
    register_workspace(ws, DATASET, home=str(home))
    base = MemRecContext(dataset=DATASET, home=str(home), roles="offline")
    cells = []
    with fast_guard(), OpenAITestServer() as server:
        ctx = llm_context(base, server, TIMEOUT_S)
        for fault in FAULTS:
            for path in paths:
                for mode in MODES:
                    cells.append(await run_cell(ws, ctx, server, fault, path, mode, runs=runs))
    bad = [await run_bad_input(ws, base, name) for name in BAD_INPUTS]
    return cells, bad


def main() -> None:
    """Write the figures table (stdout, or --out)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="runs per cell")
    parser.add_argument("--out", type=Path, default=None, help="write the table here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cells, bad = asyncio.run(run_matrix(args.runs))
    table = markdown(cells, bad)
    if args.out:
        args.out.write_text(table + "\n", "utf-8")
    else:
        import sys

        sys.stdout.write(table + "\n")


if __name__ == "__main__":
    main()
