"""Exactly-once side effects: one claim protocol for every executor, fixed fan-out, keyed recording.

Executors are the job runner (``memrec worker`` and the in-process runner run it) and a propagate
graph run started without a claim (a LangGraph server background run, or the server replaying a
saved run). Whatever runs a job, however often, each (interaction, record) patch is written once.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import nodes.load_context as load_context_node
from graph.background import propagation_handler
from graph.propagate import build_propagate_graph
from graph.recommend import graph as recommend_graph
from memory_store.events import SCHEMA_VERSION, EventLog
from memory_store.job_runner import JobRunner, _Slot, acquire_model_slot, release_model_slot
from memory_store.workspace import Workspace
from nodes.record import record_feedback, record_interaction
from roles.offline_roles import OfflineLMMem
from schemas.context import MemRecContext
from schemas.recommend_state import Feedback
from schemas.records import CallUsage, PropagationInput, PropagationResult, RoleOutput
from services.worker import PropagationWorker
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures
from tests.support.postgres import fresh_dataset_name, pg_url  # noqa: F401 (a fixture)

ws, ctx = workspace_fixtures(TINY_MOVIES)


def unseen(ws: Workspace, user: str, n: int) -> list[str]:
    u = ws.user_code(user)
    return [i for i in ws.dataset.item_ids if not ws.graph.has(u, ws.item_code(i))][:n]


class CountingLMMem:
    """The offline LMMem, counting calls and optionally waiting (a slow model)."""

    def __init__(self, ws: Workspace, delay_s: float = 0.0) -> None:
        self.offline = OfflineLMMem(ws)
        self.delay_s = delay_s
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def propagate(self, inp: PropagationInput) -> RoleOutput[PropagationResult]:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            return RoleOutput(value=self.offline.propagation(inp), usage=CallUsage(calls=1))
        finally:
            self.in_flight -= 1


def graph_with(lmmem: CountingLMMem) -> Any:
    return build_propagate_graph(lmmem).compile()


def patches_per_cause(ws: Workspace, iid: str) -> Counter[tuple[str, str]]:
    return Counter((row.kind, row.entity_id) for row in ws.events.writes_caused_by(iid))


# ------------------------------------------------------------------------------ the job API


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> EventLog:
    """The job API on the SQLite event log and on Postgres (``MEMREC_DATABASE_URL``)."""
    if request.param == "postgres":
        from memory_store.pg_events import PgEventLog

        events: EventLog = PgEventLog(request.getfixturevalue("pg_url"), fresh_dataset_name())  # type: ignore[assignment]
    else:
        events = EventLog(tmp_path / "events.sqlite")
    events.record_interaction("u", "i", interaction_id="a")
    return events


def test_claim_outcomes(log: EventLog) -> None:
    assert log.claim("nope", "w1") == "missing"
    assert log.claim("a", "w1", lease_s=30) == "claimed"
    assert log.claim("a", "w1") == "held"  # the holder confirms (and renews)
    assert log.claim("a", "w2") == "busy"  # a live lease is never taken
    assert log.claim_job("w2") is None
    job = log.get_job("a")
    assert job is not None and job.status == "running" and job.attempts == 1
    assert log.complete_job("a", "w1")
    assert log.claim("a", "w2") == "done"
    assert log.complete_job("a", "w1")  # completing again is harmless


def test_a_lapsed_lease_is_taken_over_and_the_old_owner_is_fenced(log: EventLog) -> None:
    assert log.claim("a", "dead", lease_s=0.01) == "claimed"
    import time

    time.sleep(0.02)
    assert log.claim("a", "alive") == "claimed"
    assert log.claim("a", "dead") == "busy"
    assert log.save_fanout("a", "dead", [("user:x", 1.0)]) is None  # not the holder: not kept
    assert log.complete_job("a", "dead") is False
    job = log.get_job("a")
    assert job is not None and job.attempts == 2 and job.fanout is None


def test_parked_jobs_are_not_claimed_until_retried(log: EventLog) -> None:
    assert log.claim("a", "w") == "claimed"
    log.fail_job("a", "w", "boom", max_attempts=1)
    assert log.claim("a", "w2") == "failed"
    assert log.retry_failed("a") == 1
    assert log.claim("a", "w2") == "claimed"


def test_fanout_and_answer_are_kept_first_writer_wins(log: EventLog) -> None:
    assert log.claim("a", "w") == "claimed"
    first = [("user:1", 0.9), ("item:2", 0.5)]
    assert log.save_fanout("a", "w", first) == first
    assert log.save_fanout("a", "w", [("user:3", 1.0)]) == first  # the stored one stays
    assert log.save_result("a", "w", {"result": {"x": 1}}) == {"result": {"x": 1}}
    assert log.save_result("a", "w", {"result": {"x": 2}}) == {"result": {"x": 1}}
    job = log.get_job("a")
    assert job is not None and job.fanout == first and job.result == {"result": {"x": 1}}


def test_claim_jobs_takes_a_batch_and_leaves_young_jobs_to_their_executor(log: EventLog) -> None:
    for iid in ("b", "c", "d"):
        log.record_interaction("u", iid, interaction_id=iid)
    assert log.claim_jobs("sweeper", 10, min_age_s=3600) == []  # nothing orphaned yet
    claimed = log.claim_jobs("w", 3)
    assert [e.interaction_id for e in claimed] == ["a", "b", "c"]
    assert [e.interaction_id for e in log.claim_jobs("w2", 3)] == ["d"]


def test_an_older_event_log_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    with EventLog(path) as events:
        events.record_interaction("u", "i", interaction_id="old")
    raw = sqlite3.connect(path)
    raw.executescript(  # the version-1 jobs table had neither column
        "ALTER TABLE jobs DROP COLUMN fanout; ALTER TABLE jobs DROP COLUMN result;"
        "UPDATE meta SET value='1' WHERE key='schema_version';"
    )
    raw.close()
    with EventLog(path) as events:
        job = events.get_job("old")
        assert job is not None and job.status == "pending" and job.fanout is None
        assert events.claim("old", "w") == "claimed"
        assert events.save_fanout("old", "w", [("user:1", 1.0)]) == [("user:1", 1.0)]
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    raw.close()


# ------------------------------------------------------------------------------ executors


async def test_a_server_run_does_nothing_while_a_worker_holds_the_job(
    ws: Workspace, ctx: MemRecContext
) -> None:
    event = record_interaction(ws, "5", unseen(ws, "5", 1)[0])
    lmmem = CountingLMMem(ws)
    assert ws.events.claim(event.interaction_id, "worker-1") == "claimed"
    server_run = await graph_with(lmmem).ainvoke(
        {"interaction_id": event.interaction_id}, context=ctx
    )
    assert lmmem.calls == 0 and not ws.events.writes_caused_by(event.interaction_id)
    assert "another executor holds this job" in server_run["report"].notes[0]
    handler = propagation_handler(ctx, graph_with(lmmem))
    report = await handler(event, "worker-1")
    assert lmmem.calls == 1 and report.writes
    assert ws.events.complete_job(event.interaction_id, "worker-1")
    replay = await graph_with(lmmem).ainvoke({"interaction_id": event.interaction_id}, context=ctx)
    assert lmmem.calls == 1 and not replay["report"].writes  # a replayed run: nothing again
    assert max(patches_per_cause(ws, event.interaction_id).values()) == 1


async def test_two_executors_racing_for_one_job_apply_it_once(
    ws: Workspace, ctx: MemRecContext
) -> None:
    events = [record_interaction(ws, "5", item) for item in unseen(ws, "5", 6)]
    lmmem = CountingLMMem(ws, delay_s=0.02)
    graph = graph_with(lmmem)
    worker = PropagationWorker(ws, ctx, in_flight=3)
    worker.handler = _with_graph(worker, graph)
    runs = [graph.ainvoke({"interaction_id": e.interaction_id}, context=ctx) for e in events]
    await asyncio.gather(worker.drain(), *runs)
    assert lmmem.calls == len(events)  # one model call per interaction, whoever ran it
    assert ws.events.counts()["done"] == len(events)
    for event in events:
        assert max(patches_per_cause(ws, event.interaction_id).values()) == 1


def _with_graph(worker: PropagationWorker, graph: Any) -> Any:
    handler = propagation_handler(worker.ctx, graph)

    async def handle(event: Any, owner: str) -> Any:
        return await handler(event, owner)

    return handle


async def test_a_retried_job_keeps_its_fanout_and_its_answer(
    ws: Workspace, ctx: MemRecContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = record_interaction(ws, "5", unseen(ws, "5", 1)[0])
    real_mix = load_context_node.mixed_fanout
    choices: list[list[Any]] = []

    def choose_differently(pool: list[Any], cap: int) -> list[Any]:
        chosen = real_mix(pool, cap)
        chosen = chosen[len(choices) :]  # a later choice would differ
        choices.append(chosen)
        return chosen

    monkeypatch.setattr(load_context_node, "mixed_fanout", choose_differently)
    lmmem = CountingLMMem(ws)
    failing = _FailOnUserWrite(ws, event.user_id)
    worker = PropagationWorker(ws, ctx, base_backoff_s=0.01, max_backoff_s=0.01)
    worker.handler = _with_graph(worker, graph_with(lmmem))
    await worker.drain()
    job = ws.events.get_job(event.interaction_id)
    assert job is not None and job.status == "pending" and failing.raised == 1
    assert job.fanout is not None and job.result is not None
    written_first = set(patches_per_cause(ws, event.interaction_id))
    assert ("user", event.user_id) not in written_first and written_first
    await asyncio.sleep(0.05)
    await worker.drain()
    job = ws.events.get_job(event.interaction_id)
    assert job is not None and job.status == "done" and job.attempts == 2
    assert lmmem.calls == 1 and len(choices) == 1  # no second model call, no second choice
    written = patches_per_cause(ws, event.interaction_id)
    assert max(written.values()) == 1 and ("user", event.user_id) in written
    planned = {tuple(ref.split(":", 1)) for ref, _ in job.fanout}
    assert set(written) - {("user", event.user_id), ("item", event.item_id)} <= planned


class _FailOnUserWrite:
    """Makes the first write of one user's memory fail (a crash between a job's writes)."""

    def __init__(self, ws: Workspace, user_id: str) -> None:
        self.raised = 0
        store = ws.memories
        put, put_many = store.put, store.put_many

        def fail_once(kind: str, ids: list[str]) -> None:
            if kind == "user" and user_id in ids and not self.raised:
                self.raised += 1
                raise OSError("disk went away")

        def one(kind: str, entity_id: str, *args: Any, **kwargs: Any) -> Any:
            fail_once(kind, [entity_id])
            return put(kind, entity_id, *args, **kwargs)  # type: ignore[arg-type]

        def many(kind: str, writes: list[tuple[str, str, int]], **kwargs: Any) -> Any:
            fail_once(kind, [w[0] for w in writes])
            return put_many(kind, writes, **kwargs)  # type: ignore[arg-type]

        store.put, store.put_many = one, many  # type: ignore[method-assign]


async def test_the_runner_keeps_in_flight_jobs_running_at_once(
    ws: Workspace, ctx: MemRecContext
) -> None:
    events = [record_interaction(ws, u, unseen(ws, u, 1)[0]) for u in ("3", "4", "5", "6", "7")]
    lmmem = CountingLMMem(ws, delay_s=0.05)
    worker = PropagationWorker(ws, ctx, in_flight=4)
    worker.handler = _with_graph(worker, graph_with(lmmem))
    assert await worker.drain() == len(events)
    assert lmmem.max_in_flight == 4 and lmmem.calls == len(events)
    assert worker.stats.done == len(events) and ws.events.counts()["done"] == len(events)


async def test_a_job_writing_hands_its_model_slot_to_the_next_job(
    ws: Workspace, ctx: MemRecContext
) -> None:
    """in_flight bounds the model calls: the next job's call starts while the last one writes."""
    events = [record_interaction(ws, u, unseen(ws, u, 1)[0]) for u in ("3", "4", "5")]
    lmmem = CountingLMMem(ws, delay_s=0.02)
    store = ws.memories
    put_many = store.put_many
    overlapped: list[int] = []

    def slow_put(kind: str, writes: list[tuple[str, str, int]], **kwargs: Any) -> Any:
        for _ in range(30):  # at most 0.3 s: until another job's model call is running
            if lmmem.in_flight:
                overlapped.append(lmmem.in_flight)
                break
            threading.Event().wait(0.01)
        return put_many(kind, writes, **kwargs)  # type: ignore[arg-type]

    store.put_many = slow_put  # type: ignore[method-assign]
    worker = PropagationWorker(ws, ctx, in_flight=1, poll_s=0.01)
    worker.handler = _with_graph(worker, graph_with(lmmem))
    assert await worker.drain() == len(events)
    assert lmmem.max_in_flight == 1  # never two model calls at once
    assert overlapped  # but a job's writes ran while the next job's model call was in flight
    assert ws.events.counts()["done"] == len(events)
    for event in events:
        assert max(patches_per_cause(ws, event.interaction_id).values()) == 1


async def test_the_runner_bounds_model_calls_and_writers_apart(ws: Workspace) -> None:
    """in_flight model calls, in_flight more jobs preparing, in_flight more writing."""
    for n in range(3, 12):
        record_interaction(ws, str(n), unseen(ws, str(n), 1)[0])
    now = {"model": 0, "before_end": 0, "all": 0}
    most = dict(now)

    def enter(key: str) -> None:
        now[key] += 1
        most[key] = max(most[key], now[key])

    async def handler(event: Any, owner: str) -> None:
        enter("all")
        enter("before_end")
        await asyncio.sleep(0.01)  # preparing: claim, context
        await acquire_model_slot()
        enter("model")
        await asyncio.sleep(0.03)
        now["model"] -= 1
        now["before_end"] -= 1
        release_model_slot()
        await asyncio.sleep(0.1)  # writing
        now["all"] -= 1

    runner = JobRunner(ws.events, handler, in_flight=2, poll_s=0.01)
    assert await runner.drain() == 9
    assert most == {"model": 2, "before_end": 4, "all": 6}
    release_model_slot()  # outside a job: nothing to release, no error
    await acquire_model_slot()  # nor to wait for


async def test_a_model_place_is_taken_again_for_a_second_call_of_a_job() -> None:
    gate = asyncio.Semaphore(1)
    first, other = _Slot(asyncio.Event(), gate), _Slot(asyncio.Event(), gate)
    await first.acquire()
    first.release()
    await first.acquire()  # a node run again after its release
    assert gate.locked()
    waiting = asyncio.create_task(other.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # one place: the other job waits
    first.release()
    await asyncio.wait_for(waiting, 1)


async def test_a_job_without_a_model_call_is_bounded_by_the_jobs_before_their_end(
    ws: Workspace,
) -> None:
    for u in ("3", "4", "5", "6", "7", "8"):
        record_interaction(ws, u, unseen(ws, u, 1)[0])
    running = most = 0

    async def handler(event: Any, owner: str) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)
        running -= 1

    runner = JobRunner(ws.events, handler, in_flight=2, poll_s=0.01)
    assert await runner.drain() == 6 and most == 4


# ------------------------------------------------------------------------------ recording


def test_recording_twice_with_one_key_records_once(ws: Workspace) -> None:
    items = unseen(ws, "5", 2)
    feedback = [Feedback(item_id=i) for i in items]
    first = record_feedback(ws, "5", feedback, key="client-retry-1")
    again = record_feedback(ws, "5", feedback, key="client-retry-1")
    other = record_feedback(ws, "5", feedback[:1], key="another-request")
    assert [e.interaction_id for e in again] == [e.interaction_id for e in first]
    assert other[0].interaction_id not in {e.interaction_id for e in first}
    assert len(ws.events.interactions(user_id="5")) == 3 and ws.events.counts()["pending"] == 3


async def test_a_replayed_or_retried_recommend_run_records_its_feedback_once(
    ws: Workspace, ctx: MemRecContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMREC_PROPAGATION", "worker")
    item = unseen(ws, "5", 1)[0]
    inp = {"user_id": "5", "candidates": [item], "feedback": [{"item_id": item}]}
    replayed = {"configurable": {"run_id": "run-7"}}  # the server replays a run with its id
    outs = [await recommend_graph.ainvoke(inp, config=replayed, context=ctx) for _ in range(2)]
    keyed = {**inp, "idempotency_key": "req-1"}  # a client retry: a new run, the same key
    outs += [await recommend_graph.ainvoke(keyed, context=ctx) for _ in range(2)]
    plain = await recommend_graph.ainvoke(inp, context=ctx)  # neither: a new interaction
    assert outs[0]["recorded"] == outs[1]["recorded"]
    assert outs[2]["recorded"] == outs[3]["recorded"] != outs[0]["recorded"]
    assert plain["recorded"] != outs[0]["recorded"]
    assert len(ws.events.interactions(user_id="5")) == 3
