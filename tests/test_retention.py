"""Audit retention: the last N versions and everything younger than T keep their texts.

Pruned rows keep cause, version and time (so a replayed job is still recognised and doctor still
sees every job's writes) but no text; rollback refuses them; `doctor --compact` returns the space.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memory_store.retention import RetentionPolicy, apply_retention
from memory_store.workspace import open_workspace
from memory_store.writes import UnknownVersion, apply_write, rollback
from schemas.context import MemRecContext
from services.repair import compact, diagnose
from tests.support.tiny_store import tiny_store

BIG = "x" * 4000  # audit rows carry whole memory texts


def _write_versions(ws, entity: str, n: int, at: float) -> None:  # type: ignore[no-untyped-def]
    for k in range(n):
        apply_write(
            ws.memories, ws.events, "user", entity, f"v{k + 2} {BIG}", cause=f"{entity}-{k}"
        )
    # backdate the rows: the policy looks at their time
    with ws.events._tx() as conn:
        conn.execute("UPDATE audit SET at=? WHERE entity_id=?", (at, entity))


def test_old_versions_beyond_the_last_n_lose_their_text_only(tmp_path: Path) -> None:
    dataset, home = tiny_store(tmp_path / "home")
    ws = open_workspace(dataset, home=home)
    now = time.time()
    _write_versions(ws, "u1", 6, at=now - 40 * 86400)  # old
    _write_versions(ws, "u2", 6, at=now - 1 * 86400)  # young: all kept
    pruned = apply_retention(ws.events, RetentionPolicy(keep_versions=2, keep_days=30), now=now)
    assert pruned == 4  # u1 v2..v5; v6 and v7 are its last two
    history = {row.version: row for row in ws.events.history("user", "u1")}
    assert [v for v, r in history.items() if r.new_text] == [6, 7]
    assert history[3].cause == "u1-1" and history[3].previous_text is None
    assert ws.events.applied("u1-1", "user", "u1")  # a replay of that job is still skipped
    assert all(r.new_text for r in ws.events.history("user", "u2"))
    with pytest.raises(UnknownVersion):
        rollback(ws.memories, ws.events, "user", "u1", 3)
    assert rollback(ws.memories, ws.events, "user", "u1", 6).text.startswith("v6 ")
    assert apply_retention(ws.events, RetentionPolicy(2, 30), now=now) == 1  # v6 is old now
    ws.events.close()


def test_doctor_compact_applies_the_policy_and_returns_the_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, home = tiny_store(tmp_path / "home")
    ws = open_workspace(dataset, home=home)
    for user in ("u1", "u2", "u4", "u5"):
        _write_versions(ws, user, 8, at=time.time() - 90 * 86400)
    ws.events.close()
    monkeypatch.setenv("MEMREC_AUDIT_KEEP_VERSIONS", "1")
    monkeypatch.setenv("MEMREC_AUDIT_KEEP_DAYS", "7")
    sizes = compact(MemRecContext(dataset=dataset, home=str(home)))
    assert sizes["rows_pruned"] == 4 * 7
    assert sizes["bytes_after"] < sizes["bytes_before"] / 2, sizes
    report = diagnose(dataset, home)
    assert report.ok, report.problems
    assert report.counts["audit_rows_pruned"] == 28


def test_policy_configuration_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMREC_AUDIT_KEEP_VERSIONS", "0")
    with pytest.raises(ValueError, match="MEMREC_AUDIT_KEEP_VERSIONS"):
        RetentionPolicy.from_env()
    monkeypatch.setenv("MEMREC_AUDIT_KEEP_VERSIONS", "many")
    with pytest.raises(ValueError, match="MEMREC_AUDIT_KEEP_VERSIONS"):
        RetentionPolicy.from_env()
    monkeypatch.setenv("MEMREC_AUDIT_KEEP_VERSIONS", "5")
    monkeypatch.setenv("MEMREC_AUDIT_KEEP_DAYS", "2.5")
    assert RetentionPolicy.from_env() == RetentionPolicy(5, 2.5)
