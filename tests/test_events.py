"""Event log, job queue and audit trail (memory_store/events.py)."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from memory_store.events import SCHEMA_VERSION, EventLog, InteractionConflict, SchemaMismatch
from tests.support.postgres import fresh_dataset_name, pg_url  # noqa: F401 (a fixture)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def log(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[EventLog]:
    """The event log on its SQLite file, and the same operations on Postgres."""
    if request.param == "postgres":
        from memory_store.pg_events import PgEventLog

        url = request.getfixturevalue("pg_url")
        pg = PgEventLog(url, fresh_dataset_name(), clock=clock, rng=random.Random(7))
        yield pg  # type: ignore[misc]
        pg.close()
        return
    with EventLog(tmp_path / "events.db", clock=clock, rng=random.Random(7)) as opened:
        yield opened


# ------------------------------------------------------------------------------ interactions


def test_record_is_durable_across_reopen_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    first = EventLog(path)
    event = first.record_interaction("u1", "i1", ts=123.0)
    first.close()

    reopened = EventLog(path)
    assert reopened.get_interaction(event.interaction_id) == event
    assert reopened.counts()["pending"] == 1
    assert reopened.journal_mode() == "wal"
    reopened.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )
    raw.close()


def test_default_ids_are_distinct_hex(log: EventLog) -> None:
    a = log.record_interaction("u1", "i1")
    b = log.record_interaction("u1", "i1")
    assert a.interaction_id != b.interaction_id
    assert len(a.interaction_id) == 32 and int(a.interaction_id, 16) >= 0
    assert a.ts == 1000.0  # defaults to the clock


def test_same_interaction_id_is_idempotent(log: EventLog, clock: FakeClock) -> None:
    first = log.record_interaction("u1", "i1", ts=5.0, interaction_id="x1")
    clock.now += 10
    again = log.record_interaction("u1", "i1", ts=99.0, interaction_id="x1")
    assert again == first and again.ts == 5.0
    assert len(log.interactions()) == 1
    assert log.counts() == {"pending": 1, "running": 0, "done": 0, "failed": 0}


def test_reused_id_for_another_interaction_is_rejected(log: EventLog) -> None:
    log.record_interaction("u1", "i1", interaction_id="x1")
    with pytest.raises(InteractionConflict, match="already recorded"):
        log.record_interaction("u2", "i1", interaction_id="x1")


def test_empty_user_rejected(log: EventLog) -> None:
    with pytest.raises(ValueError, match="user_id must be a non-empty"):
        log.record_interaction("", "i1")


def test_interaction_filters_by_user_and_seq(log: EventLog) -> None:
    for n, user in enumerate(["u1", "u2", "u1", "u1"]):
        log.record_interaction(user, f"i{n}", interaction_id=f"x{n}")
    assert [e.interaction_id for e in log.interactions("u1")] == ["x0", "x2", "x3"]
    rows = log.interaction_rows()
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    newer = log.interactions(since_seq=rows[1].seq)
    assert [e.interaction_id for e in newer] == ["x2", "x3"]
    assert [e.interaction_id for e in log.interactions("u1", rows[2].seq)] == ["x3"]
    assert log.get_interaction("missing") is None


def test_200_concurrent_records_from_8_threads(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")

    def record(n: int) -> str:
        return log.record_interaction(f"u{n % 10}", f"i{n}").interaction_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(record, range(200)))
    assert len(set(ids)) == 200
    assert {e.interaction_id for e in log.interactions()} == set(ids)
    assert log.counts()["pending"] == 200
    assert len(log.jobs(limit=1000)) == 200
    assert all(len(log.interactions(f"u{u}")) == 20 for u in range(10))
    log.close()


def test_delete_user_removes_interactions_and_jobs(log: EventLog) -> None:
    log.record_interaction("u1", "i1", interaction_id="a")
    log.record_interaction("u2", "i1", interaction_id="b")
    log.record_interaction("u1", "i2", interaction_id="c")
    assert log.claim_job("w") is not None  # a running job goes too
    assert log.delete_user("u1") == 2
    assert [e.interaction_id for e in log.interactions()] == ["b"]
    assert [j.interaction_id for j in log.jobs()] == ["b"]
    assert log.complete_job("a", "w") is False
    assert log.delete_user("u1") == 0


def test_schema_version_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    EventLog(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(SchemaMismatch, match="version 99"):
        EventLog(path)


# ------------------------------------------------------------------------------ jobs


def test_claim_order_is_fifo(log: EventLog) -> None:
    for name in ["a", "b", "c"]:
        log.record_interaction("u1", name, interaction_id=name)
    claimed = [log.claim_job("w1", lease_s=30) for _ in range(3)]
    assert [e.interaction_id for e in claimed if e] == ["a", "b", "c"]
    assert log.claim_job("w1") is None
    job = log.get_job("a")
    assert job is not None
    assert (job.status, job.attempts, job.lease_owner, job.lease_expires_at) == (
        "running",
        1,
        "w1",
        1030.0,
    )


def test_concurrent_claims_from_two_logs_claim_each_job_once(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    setup = EventLog(path)
    expected = {setup.record_interaction(f"u{n % 3}", f"i{n}").interaction_id for n in range(60)}
    setup.close()
    logs = [EventLog(path), EventLog(path)]
    claimed: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def drain(worker: int) -> None:
        start.wait()
        while (event := logs[worker].claim_job(f"w{worker}")) is not None:
            claimed[worker].append(event.interaction_id)
            assert logs[worker].complete_job(event.interaction_id, f"w{worker}")

    threads = [threading.Thread(target=drain, args=(w,)) for w in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    everything = claimed[0] + claimed[1]
    assert len(everything) == len(set(everything)) == 60
    assert set(everything) == expected
    assert logs[0].counts() == {"pending": 0, "running": 0, "done": 60, "failed": 0}
    assert all(j.attempts == 1 for j in logs[1].jobs(limit=100))
    for opened in logs:
        opened.close()


def test_expired_lease_is_reclaimed_and_stale_owner_ignored(
    log: EventLog, clock: FakeClock
) -> None:
    log.record_interaction("u1", "i1", interaction_id="a")
    assert log.claim_job("dead", lease_s=10) is not None
    assert log.claim_job("other") is None
    assert log.reclaim_expired(now=1005.0) == 0
    clock.now = 1011.0
    assert log.reclaim_expired() == 1
    job = log.get_job("a")
    assert job is not None and job.status == "pending" and job.lease_owner is None
    event = log.claim_job("alive")
    assert event is not None and event.interaction_id == "a"
    assert log.complete_job("a", "dead") is False
    assert log.fail_job("a", "dead", "late") is None
    assert log.complete_job("a", "alive") is True
    done = log.get_job("a")
    assert done is not None and (done.status, done.attempts) == ("done", 2)


def test_reclaim_parks_a_job_that_used_all_attempts(log: EventLog, clock: FakeClock) -> None:
    log.record_interaction("u1", "i1", interaction_id="a")
    log.claim_job("w", lease_s=1)
    clock.now += 2
    assert log.reclaim_expired(max_attempts=1) == 0
    job = log.get_job("a")
    assert job is not None and job.status == "failed"
    assert job.last_error == "lease expired on the last attempt"


def test_backoff_then_parked_as_failed(log: EventLog, clock: FakeClock) -> None:
    log.record_interaction("u1", "i1", interaction_id="a")
    for attempt, base_delay in [(1, 1.0), (2, 2.0)]:
        assert log.claim_job("w") is not None
        job = log.fail_job("a", "w", f"boom {attempt}", max_attempts=3, base_backoff_s=1.0)
        assert job is not None and job.status == "pending" and job.attempts == attempt
        delay = job.next_attempt_at - clock.now
        assert base_delay <= delay <= 1.5 * base_delay
        assert log.claim_job("w") is None  # not due yet
        clock.now = job.next_attempt_at
    assert log.claim_job("w") is not None
    parked = log.fail_job("a", "w", "boom 3", max_attempts=3)
    assert parked is not None
    assert (parked.status, parked.attempts, parked.last_error) == ("failed", 3, "boom 3")
    clock.now += 10_000
    assert log.claim_job("w") is None
    assert log.counts() == {"pending": 0, "running": 0, "done": 0, "failed": 1}
    assert [j.interaction_id for j in log.jobs("failed")] == ["a"]


def test_retry_failed_all_or_one(log: EventLog) -> None:
    for name in ["a", "b"]:
        log.record_interaction("u1", name, interaction_id=name)
        log.claim_job("w")
        log.fail_job(name, "w", "nope", max_attempts=1)
    assert log.counts()["failed"] == 2
    assert log.retry_failed("b") == 1
    assert log.retry_failed("b") == 0
    job = log.get_job("b")
    assert job is not None and (job.status, job.attempts) == ("pending", 0)
    assert log.retry_failed() == 1
    assert log.counts() == {"pending": 2, "running": 0, "done": 0, "failed": 0}
    event = log.claim_job("w")
    assert event is not None and event.interaction_id == "a"


def test_jobs_rejects_unknown_status(log: EventLog) -> None:
    with pytest.raises(ValueError, match="accepted: pending, running, done, failed"):
        log.jobs("queued")  # type: ignore[arg-type]


def test_jobs_limit_and_order(log: EventLog) -> None:
    for n in range(5):
        log.record_interaction("u1", f"i{n}", interaction_id=f"x{n}")
    assert [j.interaction_id for j in log.jobs(limit=3)] == ["x0", "x1", "x2"]


# ------------------------------------------------------------------------------ audit


def test_audit_history_is_oldest_first_and_replay_ignored(log: EventLog) -> None:
    assert log.audit_write("user", "u1", 2, "a", "b", "x2", at=2.0)
    assert log.audit_write("user", "u1", 1, None, "a", "warmup", at=1.0)
    assert log.audit_write("user", "u1", 3, "b", "c", "x3", at=3.0)
    assert not log.audit_write("user", "u1", 2, "a", "DIFFERENT", "x2")
    history = log.history("user", "u1")
    assert [(r.version, r.new_text, r.cause) for r in history] == [
        (1, "a", "warmup"),
        (2, "b", "x2"),
        (3, "c", "x3"),
    ]
    assert log.version_text("user", "u1", 2) == "b"
    assert log.version_text("user", "u1", 9) is None
    assert log.history("item", "u1") == []
    versions = {"u1": 3, "u2": 1} | {f"n{n}": 1 for n in range(300)}  # more than one chunk
    assert log.audited_versions("user", versions) == {"u1"}
    assert log.audited_versions("user", {"u1": 4}) == set()
    assert log.audited_versions("item", {"u1": 3}) == set()


def test_applied_and_writes_caused_by(log: EventLog) -> None:
    event = log.record_interaction("u1", "i1", interaction_id="x1")
    log.record_interaction("u2", "i1", interaction_id="x2")
    log.audit_write("user", "u1", 2, "a", "b", event.interaction_id)
    log.audit_write("item", "i1", 5, "p", "q", event.interaction_id)
    log.audit_write("item", "i1", 6, "q", "r", "x2")
    log.audit_write("item", "i9", 1, None, "r", "warmup")
    assert log.applied("x1", "user", "u1")
    assert not log.applied("x1", "user", "u2")
    assert not log.applied("x2", "user", "u1")
    assert [(r.kind, r.entity_id) for r in log.writes_caused_by("x1")] == [
        ("user", "u1"),
        ("item", "i1"),
    ]
    assert [r.version for r in log.writes_caused_by_user("u2")] == [6]
    assert [r.cause for r in log.writes_caused_by_user("u1")] == ["x1", "x1"]
    assert log.writes_caused_by_user("nobody") == []
