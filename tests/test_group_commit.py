"""Group commit of concurrent batched writes (``memory_store/group_commit.py``).

Concurrent propagations that announce their writes share one store write per kind, a request's
kinds are written in its order (a kind after one that lost a race is not attempted), and a
failing kind reports what the kinds before it wrote, so it can be audited.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from memory_store.batch_writes import PlannedWrite, apply_writes
from memory_store.chroma_store import ChromaMemoryStore
from memory_store.events import EventLog
from memory_store.group_commit import GroupCommit, WriteRequest
from memory_store.inmemory_store import InMemoryMemoryStore
from memory_store.memories import BatchPut, MemoryRecord, PartialPut, put_batches

LONG_S = 60.0  # a linger no test may wait out: a wait that long means the announcement leaked


class VersionedCommit:
    """A commit function over a dict of versions: compare-and-set, and a log of its calls."""

    def __init__(self, fail_kind: str | None = None) -> None:
        self.versions: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, list[str]]] = []
        self.fail_kind = fail_kind

    def __call__(self, kind: str, requests: list[WriteRequest]) -> None:
        self.calls.append((kind, [req.source for req in requests]))
        if kind == self.fail_kind:
            raise OSError("disk went away")
        for req in requests:
            req.result = BatchPut()
            for entity_id, text, expected in req.writes:
                found = self.versions.get((kind, entity_id), 0)
                if found != expected:
                    req.result.conflicts[entity_id] = found
                    continue
                self.versions[(kind, entity_id)] = found + 1
                req.result.written[entity_id] = MemoryRecord(
                    kind=kind,  # type: ignore[arg-type]
                    entity_id=entity_id,
                    text=text,
                    version=found + 1,
                    updated_at=0.0,
                    source=req.source,
                )


def request(cause: str, *ids: str, expected: int = 0) -> WriteRequest:
    return WriteRequest([(i, f"{cause} text", expected) for i in ids], cause, [[0.0]] * len(ids))


def test_announced_writers_share_one_commit_per_kind() -> None:
    commit = VersionedCommit()
    group = GroupCommit(commit, linger_s=LONG_S)
    results: dict[str, Any] = {}
    b_announced = threading.Event()

    def job_b() -> None:
        with group.expect("b", ["item", "user"]):
            b_announced.set()
            a_queued.wait()
            parts = [("item", request("b", "i2")), ("user", request("b", "u2"))]
            results["b"] = group.submit(parts)

    a_queued = threading.Event()
    thread = threading.Thread(target=job_b)
    thread.start()
    b_announced.wait()
    with group.expect("a", ["item", "user"]):
        a_queued.set()  # b submits while a, the leader, waits for it
        results["a"] = group.submit([("item", request("a", "i1")), ("user", request("a", "u1"))])
    thread.join()
    assert [(kind, sorted(sources)) for kind, sources in commit.calls] == [
        ("item", ["a", "b"]),
        ("user", ["a", "b"]),
    ]
    assert [set(r.written) for r in results["a"]] == [{"i1"}, {"u1"}]
    assert [set(r.written) for r in results["b"]] == [{"i2"}, {"u2"}]


def test_a_lone_writer_and_a_withdrawn_announcement_do_not_hold_the_leader() -> None:
    commit = VersionedCommit()
    group = GroupCommit(commit, linger_s=LONG_S, gather_s=LONG_S)
    with group.expect("gone", ["user"]):
        pass  # announced, then nothing to write: withdrawn on leaving
    with group.expect("a", ["user"]):
        assert group.submit([("user", request("a", "u1"))])[0] is not None
    assert group.submit([("user", request("b", "u2"))])[0] is not None  # never announced
    assert commit.calls == [("user", ["a"]), ("user", ["b"])]


def test_under_load_a_leader_gathers_a_group_before_it_commits() -> None:
    """After a merged group, the next leader waits (up to gather_s) for min_group requests."""
    commit = VersionedCommit()
    group = GroupCommit(commit, linger_s=LONG_S, gather_s=LONG_S, min_group=3)
    b_announced, a_leads = threading.Event(), threading.Event()

    def job_b() -> None:
        with group.expect("b", ["user"]):
            b_announced.set()
            a_leads.wait()
            group.submit([("user", request("b", "u2"))])

    first = threading.Thread(target=job_b)
    first.start()
    b_announced.wait()
    with group.expect("a", ["user"]):  # a leads and waits for b: a group of two, load
        a_leads.set()
        group.submit([("user", request("a", "u1"))])
    first.join()
    assert [sorted(sources) for _, sources in commit.calls] == [["a", "b"]]
    leader = threading.Thread(target=lambda: group.submit([("user", request("c", "u3"))]))
    leader.start()  # waits for two more, not LONG_S
    others = [
        threading.Thread(target=lambda c=c: group.submit([("user", request(c, f"u-{c}"))]))
        for c in ("d", "e")
    ]
    for thread in others:
        thread.start()
    for thread in [leader, *others]:
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert [sorted(sources) for _, sources in commit.calls] == [["a", "b"], ["c", "d", "e"]]


def test_a_nested_announcement_replaces_the_outer_one() -> None:
    commit = VersionedCommit()
    group = GroupCommit(commit, linger_s=LONG_S)
    with group.expect("a", ["item", "user"]), group.expect("a", ["user"]):
        # the inner block knows only the user memory is written: no wait for an item request
        assert group.submit([("user", request("a", "u1"))])[0] is not None


def test_a_kind_after_a_lost_race_is_not_attempted() -> None:
    commit = VersionedCommit()
    commit.versions[("item", "i1")] = 3  # another writer got there first
    group = GroupCommit(commit)
    item, user = group.submit([("item", request("a", "i1", "i2")), ("user", request("a", "u1"))])
    assert item is not None and item.conflicts == {"i1": 3} and set(item.written) == {"i2"}
    assert user is None  # left to the caller, after the item retry: the user memory stays last
    assert commit.calls == [("item", ["a"])]


def test_a_failing_kind_reports_what_the_kinds_before_it_wrote() -> None:
    group = GroupCommit(VersionedCommit(fail_kind="user"))
    with pytest.raises(PartialPut) as caught:
        group.submit([("item", request("a", "i1")), ("user", request("a", "u1"))])
    item, user = caught.value.results
    assert item is not None and set(item.written) == {"i1"} and user is None
    assert isinstance(caught.value.error, OSError)


def test_kinds_in_conflicting_orders_are_not_merged() -> None:
    commit = VersionedCommit()
    group = GroupCommit(commit, linger_s=LONG_S)
    done = threading.Event()
    out: list[Any] = []

    def reversed_job() -> None:
        with group.expect("b", ["user", "item"]):
            b_ready.set()
            a_queued.wait()
            out.append(group.submit([("user", request("b", "u2")), ("item", request("b", "i2"))]))
        done.set()

    b_ready, a_queued = threading.Event(), threading.Event()
    thread = threading.Thread(target=reversed_job)
    thread.start()
    b_ready.wait()
    with group.expect("a", ["item", "user"]):
        a_queued.set()
        group.submit([("item", request("a", "i1")), ("user", request("a", "u1"))])
    thread.join()
    assert done.is_set() and out[0][0] is not None and out[0][1] is not None
    # b writes user before item, a item before user: never in one group, each in its order
    assert all(len(sources) == 1 for _, sources in commit.calls)
    assert [k for k, s in commit.calls if s == ["a"]] == ["item", "user"]
    assert [k for k, s in commit.calls if s == ["b"]] == ["user", "item"]


def test_put_batches_without_store_support_writes_kind_by_kind() -> None:
    store = InMemoryMemoryStore()
    store.bulk_init("item", [("i1", "a")], "warmup")
    store.bulk_init("user", [("u1", "b")], "warmup")
    lost = put_batches(
        store, [("item", [("i1", "new", 5)], None), ("user", [("u1", "new", 1)], None)], source="c"
    )
    assert lost[0] is not None and lost[0].conflicts == {"i1": 1} and lost[1] is None
    assert store.get("user", "u1").version == 1  # type: ignore[union-attr]


def test_concurrent_propagations_share_the_chroma_upserts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two causes writing at once through apply_writes: one upsert per kind, both audited."""
    store = ChromaMemoryStore(path=tmp_path / "chroma")
    log = EventLog(tmp_path / "events.sqlite")
    try:
        store.bulk_init("item", [("i1", "item one"), ("i2", "item two")], "warmup")
        store.bulk_init("user", [("u1", "user one"), ("u2", "user two")], "warmup")
        store._group.linger_s = LONG_S
        upserts: list[list[str]] = []
        for collection in store._collections.values():
            real = collection.upsert

            def counted(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                upserts.append(list(kwargs["ids"]))
                return _real(*args, **kwargs)

            monkeypatch.setattr(collection, "upsert", counted)
        announced = threading.Barrier(2)

        def propagate(cause: str, item: str, user: str) -> None:
            plan = [
                PlannedWrite("item", item, lambda t: f"{t} +{cause}"),
                PlannedWrite("user", user, lambda t: f"{t} +{cause}"),
            ]
            with store.expect_writes(cause, ["item", "user"]):
                announced.wait()  # both announced before either writes
                apply_writes(store, log, plan, cause=cause)

        threads = [
            threading.Thread(target=propagate, args=("a", "i1", "u1")),
            threading.Thread(target=propagate, args=("b", "i2", "u2")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(map(sorted, upserts)) == [["i1", "i2"], ["u1", "u2"]]
        assert store.get("user", "u2").text == "user two +b"  # type: ignore[union-attr]
        audited = {(r.kind, r.entity_id, r.cause) for c in "ab" for r in log.writes_caused_by(c)}
        assert audited == {
            ("item", "i1", "a"), ("user", "u1", "a"), ("item", "i2", "b"), ("user", "u2", "b")
        }  # fmt: skip
    finally:
        log.close()
        store.close()
