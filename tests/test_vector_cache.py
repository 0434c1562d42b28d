"""The vector cache ends as the embedding of each memory's newest text, whatever the order in
which concurrent writers report their writes (curation's memory_sim and the harness's leak check
read it); a concurrent writer's unaudited in-flight write is repaired quietly.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests/support/fixtures.py are parameters)

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from memory_store.batch_writes import PlannedWrite, apply_writes
from memory_store.workspace import Workspace
from memory_store.writes import apply_write
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures

ws, ctx = workspace_fixtures(TINY_MOVIES)


def _row(ws: Workspace, item: str) -> np.ndarray:
    return ws.vectors.items[ws.item_code(item)]


def _embedding(ws: Workspace, text: str) -> np.ndarray:
    return ws.vectors.embedding.embed_texts([text])[0]


def test_a_late_report_of_an_older_write_does_not_overwrite_the_newer_vector(ws: Workspace) -> None:
    item = ws.dataset.item_ids[0]
    first = apply_write(ws.memories, ws.events, "item", item, "older text", cause="a")
    second = apply_write(ws.memories, ws.events, "item", item, "newer text", cause="b")
    assert first is not None and second is not None and second.version > first.version
    # writer b reports first, writer a (the older write) reports last
    ws.on_memory_write("item", item, second.text, version=second.version)
    ws.on_memory_write("item", item, first.text, version=first.version)
    assert np.allclose(_row(ws, item), _embedding(ws, "newer text"))
    assert ws.memory_text("item", item) == "newer text"


def test_concurrent_batched_writers_leave_every_vector_in_step_with_its_memory(
    ws: Workspace,
) -> None:
    items = ws.dataset.item_ids[:3]  # every writer writes all three: maximal contention
    barrier = threading.Barrier(6)

    def writer(n: int) -> None:
        barrier.wait()
        for round_ in range(6):
            cause = f"writer-{n}-{round_}"
            writes = [PlannedWrite("item", i, f"{i} by {cause}") for i in items]
            out = apply_writes(
                ws.memories, ws.events, writes, cause=cause, embed=ws.embedder(), max_retries=20
            )
            for w, done in zip(writes, out, strict=True):
                assert done is not None
                ws.on_memory_write(
                    "item", w.entity_id, done.record.text, done.vector, version=done.record.version
                )

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    for item in items:
        record = ws.memories.get("item", item)
        assert record is not None and record.version == 1 + 6 * 6
        assert np.allclose(_row(ws, item), _embedding(ws, record.text), atol=1e-5), item


def test_an_unaudited_write_still_in_flight_is_repaired_without_a_crash_warning(
    ws: Workspace, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memory_store import audit_repair

    item = ws.dataset.item_ids[1]
    current = ws.memories.get("item", item)
    assert current is not None
    # cause "alive" wrote and has not audited yet (it is between the two, in this process) ...
    ws.memories.put("item", item, "alive's text", expected_version=current.version, source="alive")
    monkeypatch.setattr(audit_repair, "_in_flight", {"alive"})
    with caplog.at_level(logging.DEBUG, logger="memory_store.writes"):
        apply_write(ws.memories, ws.events, "item", item, "next", cause="other")
    repaired = [r for r in caplog.records if "found without its audit row" in r.getMessage()]
    assert len(repaired) == 1 and repaired[0].levelno == logging.DEBUG
    assert ws.events.version_text("item", item, current.version + 1) == "alive's text"
    # ... while a write whose cause is not running here (a crashed job) is still a warning
    ws.memories.put("item", item, "crashed", expected_version=current.version + 2, source="gone")
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="memory_store.writes"):
        apply_write(ws.memories, ws.events, "item", item, "after", cause="third")
    repaired = [r for r in caplog.records if "found without its audit row" in r.getMessage()]
    assert len(repaired) == 1 and repaired[0].levelno == logging.WARNING


def test_a_write_its_own_job_audits_meanwhile_is_no_repair_and_no_warning(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    """The race a busy worker hits: B saw A's write unaudited, then A audited it and finished."""
    from memory_store.audit_repair import repair_audit

    item = ws.dataset.item_ids[1]
    current = ws.memories.get("item", item)
    assert current is not None
    written = ws.memories.put(
        "item", item, "done's text", expected_version=current.version, source="done"
    )
    assert ws.events.audit_write(
        "item", item, written.version, current.text, written.text, "done", at=written.updated_at
    )  # the job "done" audited and left: it is not in flight here any more
    with caplog.at_level(logging.DEBUG, logger="memory_store.writes"):
        repair_audit(ws.events, written)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("found without its audit row" in m for m in messages)
    assert any("audited meanwhile" in m for m in messages)
    rows = [r for r in ws.events.writes_caused_by("done") if r.entity_id == item]
    assert len(rows) == 1 and rows[0].version == written.version  # one audit row, its own


def test_row_norms_follow_refreshes_clears_and_a_replaced_array(ws: Workspace) -> None:
    vectors = ws.vectors
    norms = vectors.norms("user")
    assert np.allclose(norms, np.linalg.norm(vectors.users, axis=1))
    ws.on_memory_write("user", ws.dataset.user_ids[2], "a brand new memory text", version=99)
    vectors.clear("user", 3)
    assert np.allclose(vectors.norms("user"), np.linalg.norm(vectors.users, axis=1))
    assert vectors.norms("user")[3] == 0.0
    vectors.users = vectors.users * 2.0  # a whole new array (as an evaluation copy makes)
    assert np.allclose(vectors.norms("user"), np.linalg.norm(vectors.users, axis=1))


def test_cosines_with_known_norms_equal_the_gathered_ones(ws: Workspace) -> None:
    from memory_store.features import _cosine_rows, _cosine_to

    matrix, norms = ws.vectors.users, ws.vectors.norms("user")
    vector = matrix[0]
    rng = np.random.default_rng(0)
    for size in (0, 1, 3, len(matrix) // 2, len(matrix)):  # both branches, empty included
        codes = rng.choice(len(matrix), size=size, replace=False)
        expected = _cosine_rows(matrix[codes], vector)
        assert np.allclose(_cosine_to(matrix, norms, codes, vector), expected, atol=1e-6)
