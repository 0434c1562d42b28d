"""One writer per embedded store, readers without locks, clear errors instead of raw SQLite ones.

A second holder is simulated in-process with its own ``WriterLock`` (flock locks belong to an open
file description, so two of them conflict even inside one process); the cross-process runs are in
tests/test_chaos_writers.py (slow lane).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.propagation_cmds import register
from memory_store.events import EventLog, StoreBusy
from memory_store.workspace import open_workspace
from memory_store.writer_lock import StoreLocked, WriterLock, probe, writer_lock
from tests.support.tiny_store import store_folder, tiny_store


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Path, Path]:
    dataset, home = tiny_store(tmp_path / "home")
    return dataset, home, store_folder(dataset, home)


def test_a_second_writer_is_refused_after_a_bounded_wait_naming_the_holder(tmp_path: Path) -> None:
    first, second = WriterLock(tmp_path), WriterLock(tmp_path)
    first.acquire()
    started = time.monotonic()
    with pytest.raises(StoreLocked) as err:
        second.acquire(wait_s=0.3)
    assert 0.25 <= time.monotonic() - started < 3
    message = str(err.value)
    assert "pid" in message and "since" in message and "pytest" in message
    assert probe(tmp_path) is not None
    first.release()
    second.acquire(wait_s=0.3)  # free again: taken at once
    assert second.held
    second.release()


def test_the_first_write_takes_the_lock_and_reads_never_do(
    store: tuple[str, Path, Path],
) -> None:
    dataset, home, folder = store
    ws = open_workspace(dataset, home=home)
    ws.memories.get("user", "u1")
    ws.events.jobs()
    assert not writer_lock(folder).held  # reading took nothing
    ws.events.record_interaction("u1", "i5")
    assert writer_lock(folder).held
    ws.events.close()
    writer_lock(folder).release()


def test_a_write_while_another_process_writes_is_refused(
    store: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, home, folder = store
    other = WriterLock(folder)
    other.acquire()
    monkeypatch.setenv("MEMREC_LOCK_WAIT_S", "0.2")
    ws = open_workspace(dataset, home=home)
    with pytest.raises(StoreLocked):
        ws.events.record_interaction("u1", "i5")
    with pytest.raises(StoreLocked):
        ws.memories.put("user", "u1", "x", expected_version=1, source="t")
    assert ws.events.interactions() == []  # nothing was written
    ws.events.close()
    other.release()


def test_sqlite_lock_held_elsewhere_gives_store_busy_not_operational_error(
    store: tuple[str, Path, Path],
) -> None:
    _, _, folder = store
    path = folder / "events.sqlite"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    try:
        log = EventLog(path, busy_timeout_ms=200)  # opening a complete log writes nothing
        assert log.jobs() == []
        started = time.monotonic()
        with pytest.raises(StoreBusy) as err:
            log.record_interaction("u1", "i5")
        assert time.monotonic() - started < 5  # a bounded wait
        assert str(path) in str(err.value) and "nothing was written" in str(err.value)
        log.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_readers_work_while_a_writer_holds_sqlites_write_lock(
    store: tuple[str, Path, Path],
) -> None:
    dataset, home, folder = store
    blocker = sqlite3.connect(folder / "events.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        ws = open_workspace(dataset, home=home, readonly=True)
        assert ws.events.counts()["pending"] == 0
        assert ws.memory_text("user", "u1")
        ws.events.close()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app."""

    register(app)
    return app


def test_cli_feedback_is_refused_clearly_and_prints_nothing_recorded(
    store: tuple[str, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, home, folder = store
    other = WriterLock(folder)
    other.acquire()
    monkeypatch.setenv("MEMREC_LOCK_WAIT_S", "0.2")
    args = ["--dataset", dataset, "--home", str(home)]
    out = CliRunner().invoke(_app(), ["feedback", *args, "--user", "u1", "--item", "i5"])
    assert out.exit_code == 2, out.output
    assert "being written by another process" in out.output and "recorded" not in out.output
    other.release()
    shown = CliRunner().invoke(_app(), ["memory", "show", *args, "--user", "u1"])
    assert shown.exit_code == 0, shown.output  # read-only commands need no lock
