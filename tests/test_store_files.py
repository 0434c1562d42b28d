"""Crash-safe store files: atomic writes, the manifest, a restartable index, damaged files named.

On a small store written and indexed on the fly (tests/support/tiny_store.py).
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from dataio.files import DiskFull, atomic_write_bytes, atomic_write_with, leftover_temporaries
from memory_store.events import EventLog
from memory_store.manifest import DamagedStore, read_manifest
from memory_store.workspace import open_workspace
from memory_store.writes import apply_write, rollback
from services.index import build_index
from tests.support.tiny_store import store_folder, tiny_store


@pytest.fixture
def store(tmp_path: Path) -> tuple[str, Path, Path]:
    dataset, home = tiny_store(tmp_path / "home")
    return dataset, home, store_folder(dataset, home)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def half_then_full(fh: object) -> None:
        fh.write(b"new, but only ha")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull) as err:
        atomic_write_with(path, half_then_full)
    assert str(path) in str(err.value) and "free space" in str(err.value)
    assert path.read_bytes() == b"old"
    assert leftover_temporaries(tmp_path) == []


def test_index_records_every_step_with_checksums(store: tuple[str, Path, Path]) -> None:
    _, _, folder = store
    manifest = read_manifest(folder)
    assert manifest is not None
    assert set(manifest.steps) == {
        "catalog", "graph", "candidates", "memories", "vectors", "rules", "events"
    }  # fmt: skip
    assert "graph/attributes.txt" in manifest.steps["graph"].files
    assert manifest.steps["memories"].info["chroma"] == "embedded"


def test_a_damaged_graph_file_is_named_and_reindexing_repairs_it(
    store: tuple[str, Path, Path],
) -> None:
    dataset, home, folder = store
    (folder / "graph" / "attributes.txt").unlink()  # a kill while the graph was being saved
    with pytest.raises(DamagedStore) as err:
        open_workspace(dataset, home=home)
    message = str(err.value)
    assert "graph/attributes.txt" in message and "missing" in message
    assert "memrec doctor --repair" in message
    build_index(dataset, home=home)  # the graph step is redone, the others reused
    ws = open_workspace(dataset, home=home)
    assert ws.graph.n_interactions == len(ws.split.train)
    ws.events.close()


def test_a_truncated_file_is_rebuilt_not_reused(store: tuple[str, Path, Path]) -> None:
    dataset, home, folder = store
    vectors = folder / "vectors_users.npy"
    vectors.write_bytes(vectors.read_bytes()[:100])
    (folder / ".catalog.pkl.999.tmp").write_bytes(b"half")  # a write that was killed
    build_index(dataset, home=home)
    ws = open_workspace(dataset, home=home)
    assert ws.vectors.users.shape[0] == ws.dataset.n_users
    ws.events.close()


def test_a_deleted_event_log_is_detected_not_recreated_empty(store: tuple[str, Path, Path]) -> None:
    dataset, home, folder = store
    ws = open_workspace(dataset, home=home)
    ws.events.record_interaction("u1", "i5")
    ws.events.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / 'events.sqlite'}{suffix}").unlink(missing_ok=True)
    for attempt in (
        lambda: open_workspace(dataset, home=home),
        lambda: build_index(dataset, home=home),
    ):
        with pytest.raises(DamagedStore) as err:
            attempt()
        assert "events.sqlite" in str(err.value) and "not recreated empty" in str(err.value)
        assert "--new-event-log" in str(err.value)
    assert not (folder / "events.sqlite").exists()


def test_a_corrupt_event_log_stops_the_index_and_names_the_file(
    store: tuple[str, Path, Path],
) -> None:
    dataset, home, folder = store
    (folder / "events.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(DamagedStore) as err:
        build_index(dataset, home=home)
    assert "events.sqlite" in str(err.value) and "doctor --repair" in str(err.value)
    with pytest.raises(DamagedStore):
        open_workspace(dataset, home=home)


def test_damaged_rules_and_catalog_are_named(store: tuple[str, Path, Path]) -> None:
    dataset, home, folder = store
    rules = folder / "rules" / "generated.json"
    rules.write_text(json.dumps({"name": "x"}), encoding="utf-8")
    (folder / "manifest.json").unlink()  # a store from before manifests: errors at read time
    ws = open_workspace(dataset, home=home)
    with pytest.raises(DamagedStore) as err:
        ws.rules("generated")
    assert "rules/generated.json" in str(err.value)
    ws.events.close()
    (folder / "catalog.pkl").write_bytes(b"\x80\x05garbage")
    with pytest.raises(DamagedStore) as err:
        open_workspace(dataset, home=home)
    assert "catalog.pkl" in str(err.value)


def test_a_file_damaged_in_place_at_its_size_is_named_on_open(
    store: tuple[str, Path, Path],
) -> None:
    dataset, home, folder = store
    catalog = folder / "catalog.pkl"
    data = bytearray(catalog.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 64] = b"\xff" * 64  # same size: a size check alone would miss it
    catalog.write_bytes(bytes(data))
    with pytest.raises(DamagedStore) as err:
        open_workspace(dataset, home=home)
    assert "catalog.pkl" in str(err.value) and "checksum" in str(err.value)
    assert "memrec doctor --repair" in str(err.value)


def test_a_lost_chroma_store_is_rebuilt_from_the_audit_log_at_its_versions(
    store: tuple[str, Path, Path],
) -> None:
    dataset, home, folder = store
    ws = open_workspace(dataset, home=home)
    for n in range(3):
        apply_write(ws.memories, ws.events, "user", "u2", f"version {n + 2} text", cause=f"c{n}")
    ws.events.close()
    ws.memories.inner.close()  # type: ignore[attr-defined]
    shutil.rmtree(folder / "chroma")
    with pytest.raises(DamagedStore) as err:
        open_workspace(dataset, home=home)
    assert "chroma" in str(err.value) and "not recreated empty" in str(err.value)
    build_index(dataset, home=home)  # what `doctor --repair` runs for a lost store
    ws = open_workspace(dataset, home=home)
    rec = ws.memories.get("user", "u2")
    assert rec is not None and (rec.version, rec.text) == (4, "version 4 text")
    restored = rollback(ws.memories, ws.events, "user", "u2", 2)  # no collision with old versions
    assert restored.version == 5 and ws.events.version_text("user", "u2", 5) == "version 2 text"
    assert ws.memories.count("user") == ws.dataset.n_users
    ws.events.close()


def test_event_log_opened_read_only_refuses_writes(store: tuple[str, Path, Path]) -> None:
    from memory_store.events import ReadOnlyLog

    dataset, home, folder = store
    ws = open_workspace(dataset, home=home, readonly=True)
    assert ws.events.jobs() == []
    with pytest.raises(ReadOnlyLog):
        ws.events.record_interaction("u1", "i5")
    with pytest.raises(ReadOnlyLog):
        ws.memories.put("user", "u1", "x", expected_version=1, source="t")
    ws.events.close()
    with EventLog(folder / "events.sqlite") as log:
        assert log.interactions() == []
