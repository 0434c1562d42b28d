"""Audited compare-and-set memory writes (memory_store/writes.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from memory_store.batch_writes import PlannedWrite, apply_writes
from memory_store.events import EventLog
from memory_store.inmemory_store import InMemoryMemoryStore
from memory_store.memories import BatchPut, MemoryKind, MemoryRecord, MemoryStore, VersionConflict
from memory_store.writes import (
    UnknownMemory,
    UnknownVersion,
    WriteContention,
    apply_write,
    rollback,
)


class DictStore:
    """The smallest MemoryStore with real compare-and-set semantics (search is not needed here)."""

    def __init__(self, read_delay_s: float = 0.0) -> None:
        self.records: dict[tuple[str, str], MemoryRecord] = {}
        self.lock = threading.Lock()
        self.read_delay_s = read_delay_s
        self.puts = 0
        self.conflicts = 0

    def get(self, kind: MemoryKind, entity_id: str) -> MemoryRecord | None:
        with self.lock:
            record = self.records.get((kind, entity_id))
        time.sleep(self.read_delay_s)  # widens the read-modify-write window for race tests
        return record

    def get_many(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, MemoryRecord]:
        found = {e: self.records.get((kind, e)) for e in entity_ids}
        return {e: r for e, r in found.items() if r is not None}

    def put(
        self, kind: MemoryKind, entity_id: str, text: str, *, expected_version: int, source: str
    ) -> MemoryRecord:
        with self.lock:
            current = self.records.get((kind, entity_id))
            actual = current.version if current else 0
            if actual != expected_version:
                self.conflicts += 1
                raise VersionConflict(kind, entity_id, expected_version, actual)
            record = MemoryRecord(
                kind=kind,
                entity_id=entity_id,
                text=text,
                version=actual + 1,
                updated_at=time.time(),
                source=source,
            )
            self.records[(kind, entity_id)] = record
            self.puts += 1
            return record

    def put_many(
        self, kind: MemoryKind, writes: Sequence[tuple[str, str, int]], *, source: str, vectors=None
    ) -> BatchPut:
        out = BatchPut()
        for entity_id, text, expected in writes:
            try:
                out.written[entity_id] = self.put(
                    kind, entity_id, text, expected_version=expected, source=source
                )
            except VersionConflict as conflict:
                out.conflicts[entity_id] = conflict.actual
        return out

    def bulk_init(
        self, kind: MemoryKind, items: Iterable[tuple[str, str]], source: str, *, vectors=None
    ) -> int:
        created = 0
        for entity_id, text in items:
            if (kind, entity_id) not in self.records:
                self.put(kind, entity_id, text, expected_version=0, source=source)
                created += 1
        return created

    def delete(self, kind: MemoryKind, entity_id: str) -> None:
        self.records.pop((kind, entity_id), None)

    def ids(self, kind: MemoryKind) -> list[str]:
        return [e for k, e in self.records if k == kind]

    def count(self, kind: MemoryKind) -> int:
        return len(self.ids(kind))

    def search(
        self, kind: MemoryKind, query: str, k: int, exclude: Sequence[str] = ()
    ) -> list[tuple[MemoryRecord, float]]:
        return []

    def embeddings(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, list[float]]:
        return {}


@pytest.fixture
def log(tmp_path: Path) -> Iterator[EventLog]:
    with EventLog(tmp_path / "events.db") as opened:
        yield opened


@pytest.fixture(params=["dict", "inmemory"])
def store(request: pytest.FixtureRequest) -> MemoryStore:
    """The test fake and the project's in-memory store: the write path must hold for both."""
    return DictStore() if request.param == "dict" else InMemoryMemoryStore()


def test_stores_follow_the_protocol(store: MemoryStore) -> None:
    assert isinstance(store, MemoryStore)


def test_create_then_update_is_audited(store: MemoryStore, log: EventLog) -> None:
    first = apply_write(store, log, "user", "u1", "likes jazz", cause="warmup", create=True)
    assert first is not None and (first.version, first.source) == (1, "warmup")
    second = apply_write(store, log, "user", "u1", lambda t: t + "; and blues", cause="x1")
    assert second is not None and second.text == "likes jazz; and blues"
    history = log.history("user", "u1")
    assert [(r.version, r.previous_text, r.new_text, r.cause) for r in history] == [
        (1, None, "likes jazz", "warmup"),
        (2, "likes jazz", "likes jazz; and blues", "x1"),
    ]
    assert history[1].at == second.updated_at


def test_unknown_memory_without_create(store: MemoryStore, log: EventLog) -> None:
    with pytest.raises(UnknownMemory, match="create=True") as err:
        apply_write(store, log, "item", "i404", "text", cause="x1")
    assert isinstance(err.value, KeyError)
    assert store.get("item", "i404") is None and log.history("item", "i404") == []


def test_replaying_a_cause_writes_nothing(store: MemoryStore, log: EventLog) -> None:
    store.put("item", "i1", "v1", expected_version=0, source="warmup")
    assert apply_write(store, log, "item", "i1", lambda t: t + "+", cause="x1") is not None
    apply_write(store, log, "item", "i1", "other", cause="x2")
    assert apply_write(store, log, "item", "i1", lambda t: t + "+", cause="x1") is None
    current = store.get("item", "i1")
    assert current is not None and (current.version, current.text) == (3, "other")
    assert [r.cause for r in log.history("item", "i1")] == ["x1", "x2"]


def test_crash_window_is_repaired_without_a_second_write(store: MemoryStore, log: EventLog) -> None:
    apply_write(store, log, "user", "u1", "before", cause="warmup", create=True)
    # The worker wrote the store and died before the audit insert.
    store.put("user", "u1", "after", expected_version=1, source="x1")
    assert not log.applied("x1", "user", "u1")
    assert apply_write(store, log, "user", "u1", "after again", cause="x1") is None
    current = store.get("user", "u1")
    assert current is not None and (current.version, current.text) == (2, "after")
    repaired = log.history("user", "u1")[-1]
    assert (repaired.version, repaired.previous_text, repaired.new_text, repaired.cause) == (
        2,
        "before",
        "after",
        "x1",
    )
    assert log.applied("x1", "user", "u1")


def test_conflict_is_retried_with_the_text_recomputed(log: EventLog) -> None:
    store = DictStore()
    store.put("user", "u1", "a", expected_version=0, source="warmup")
    original_put = store.put
    raced = False

    def racing_put(kind, entity_id, text, *, expected_version, source):
        nonlocal raced
        if not raced:  # another worker slips in between our read and our write
            raced = True
            original_put(kind, entity_id, "a+other", expected_version=1, source="x0")
        return original_put(kind, entity_id, text, expected_version=expected_version, source=source)

    store.put = racing_put  # type: ignore[method-assign]
    record = apply_write(store, log, "user", "u1", lambda t: t + "+mine", cause="x1")
    assert record is not None and (record.version, record.text) == (3, "a+other+mine")
    assert store.conflicts == 1


@pytest.mark.parametrize("kind", ["dict", "inmemory"])
def test_concurrent_writers_lose_no_update(log: EventLog, kind: str) -> None:
    store: MemoryStore = DictStore(read_delay_s=0.0005) if kind == "dict" else InMemoryMemoryStore()
    # a non-empty first text: retention marks a pruned audit row as (no previous, empty text)
    apply_write(store, log, "item", "i1", "seed:", cause="warmup", create=True)
    threads_n, writes_n = 4, 25

    def writer(t: int) -> None:
        for w in range(writes_n):
            apply_write(
                store, log, "item", "i1", lambda s: s + "x", cause=f"t{t}-{w}", max_retries=1000
            )

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    final = store.get("item", "i1")
    assert final is not None
    assert final.text == "seed:" + "x" * threads_n * writes_n
    assert final.version == threads_n * writes_n + 1
    if isinstance(store, DictStore):
        assert store.conflicts > 0  # the race really happened and was retried
    history = log.history("item", "i1")
    assert [r.version for r in history] == list(range(1, final.version + 1))
    for before, after in zip(history, history[1:], strict=False):
        assert after.previous_text == before.new_text
    assert len({r.cause for r in history}) == len(history)


def test_contention_gives_up_with_a_clear_error(log: EventLog) -> None:
    store = DictStore()
    store.put("user", "u1", "a", expected_version=0, source="warmup")

    def always_conflict(kind, entity_id, text, *, expected_version, source):
        raise VersionConflict(kind, entity_id, expected_version, expected_version + 1)

    store.put = always_conflict  # type: ignore[method-assign]
    with pytest.raises(WriteContention, match="gave up after 3 compare-and-set attempts"):
        apply_write(store, log, "user", "u1", "b", cause="x1", max_retries=2, backoff_s=0.0)
    assert log.history("user", "u1") == []


def test_rollback_restores_old_text_as_a_new_version(store: MemoryStore, log: EventLog) -> None:
    for n, text in enumerate(["one", "two", "three"]):
        apply_write(store, log, "user", "u1", text, cause=f"x{n}", create=True)
    restored = rollback(store, log, "user", "u1", 1)
    assert (restored.version, restored.text, restored.source) == (4, "one", "rollback:1")
    last = log.history("user", "u1")[-1]
    assert (last.version, last.previous_text, last.new_text, last.cause) == (
        4,
        "three",
        "one",
        "rollback:1",
    )
    apply_write(store, log, "user", "u1", "four", cause="x9")
    again = rollback(store, log, "user", "u1", 1)  # a second rollback to v1 is a real write
    assert (again.version, again.text) == (6, "one")
    assert [r.version for r in log.history("user", "u1")] == [1, 2, 3, 4, 5, 6]


def test_rollback_to_an_unknown_version(store: MemoryStore, log: EventLog) -> None:
    apply_write(store, log, "user", "u1", "one", cause="x0", create=True)
    apply_write(store, log, "user", "u1", "two", cause="x1")
    with pytest.raises(UnknownVersion, match="no recorded version 7; known versions: 1, 2"):
        rollback(store, log, "user", "u1", 7)
    with pytest.raises(UnknownMemory):
        rollback(store, log, "user", "nobody", 1)


def test_rollback_to_unaudited_warmup_version(store: MemoryStore, log: EventLog) -> None:
    store.bulk_init("item", [("i1", "seed")], source="warmup")  # bulk_init writes no audit row
    restored = rollback(store, log, "item", "i1", 1)
    assert (restored.version, restored.text) == (2, "seed")


class CountingStore(DictStore):
    """Counts batched writes; can bump a record's version just before the batch (a racing job)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.race: tuple[MemoryKind, str] | None = None

    def put_many(self, kind: MemoryKind, writes: Sequence[tuple[str, str, int]], **kw: object):  # type: ignore[no-untyped-def]
        if self.race is not None and self.race[0] == kind:
            current = self.records[self.race]
            text = current.text + " +raced"
            self.put(kind, self.race[1], text, expected_version=current.version, source="other")
            self.race = None
        self.batches.append([f"{kind}:{w[0]}" for w in writes])
        return super().put_many(kind, writes, **kw)  # type: ignore[arg-type]


def test_apply_writes_batches_per_kind_and_retries_only_the_loser(log: EventLog) -> None:
    store = CountingStore()
    for kind, entity in (("item", "i1"), ("item", "i2"), ("user", "u1"), ("user", "u2")):
        store.put(kind, entity, f"{entity} text", expected_version=0, source="warmup")  # type: ignore[arg-type]
    store.race = ("user", "u2")
    plan = [
        PlannedWrite("item", "i1", lambda t: t + " +note"),
        PlannedWrite("item", "i2", lambda t: t + " +note"),
        PlannedWrite("user", "u2", lambda t: t + " +note"),
        PlannedWrite("user", "u1", "u1 rewritten"),
    ]
    embedded: list[list[str]] = []

    def embed(texts: list[str]) -> list[list[float]]:
        embedded.append(texts)
        return [[0.0]] * len(texts)

    out = apply_writes(store, log, plan, cause="job", embed=embed)
    # one write per kind, then the one that lost a race again, alone
    assert store.batches == [["item:i1", "item:i2"], ["user:u2", "user:u1"], ["user:u2"]]
    assert embedded == [["i1 text +note", "i2 text +note", "u2 text +note", "u1 rewritten"]]  # once
    assert all(w is not None for w in out)
    assert store.records[("user", "u2")].text == "u2 text +raced +note"  # retried on the new text
    assert store.records[("user", "u1")].text == "u1 rewritten"
    assert sorted((r.kind, r.entity_id) for r in log.writes_caused_by("job")) == [
        ("item", "i1"),
        ("item", "i2"),
        ("user", "u1"),
        ("user", "u2"),
    ]
    assert apply_writes(store, log, plan, cause="job") == [None] * 4  # a replay writes nothing
    assert len(store.batches) == 3


def _write(path: str, store: MemoryStore, log: EventLog, note: str, cause: str) -> object:
    def patch(text: str) -> str:
        return f"{text} +{note}"

    if path == "single":
        return apply_write(store, log, "user", "u1", patch, cause=cause)
    return apply_writes(store, log, [PlannedWrite("user", "u1", patch)], cause=cause)[0]


@pytest.mark.parametrize("overwrite", ["single", "batched"])
@pytest.mark.parametrize("retry", ["single", "batched"])
def test_write_that_lost_its_audit_row_and_was_overwritten_is_not_applied_again(
    store: MemoryStore, log: EventLog, overwrite: str, retry: str
) -> None:
    """Job X writes, is killed before auditing; job Y overwrites; X's retry must not write again."""
    store.bulk_init("user", [("u1", "seed")], source="warmup")  # v1: indexed, never audited
    _write("single", store, log, "a", "A")  # v2, audited
    store.put("user", "u1", "seed +a +x", expected_version=2, source="X")  # v3; X dies here
    assert _write(overwrite, store, log, "y", "Y") is not None  # v4
    assert _write(retry, store, log, "x", "X") is None  # X's retry: applied already
    current = store.get("user", "u1")
    assert current is not None and (current.version, current.text) == (4, "seed +a +x +y")
    history = [(r.version, r.cause, r.previous_text, r.new_text) for r in log.history("user", "u1")]
    assert history == [
        (2, "A", "seed", "seed +a"),
        (3, "X", "seed +a", "seed +a +x"),  # repaired before Y overwrote it
        (4, "Y", "seed +a +x", "seed +a +x +y"),
    ]
