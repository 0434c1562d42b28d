"""The versions an embedded Chroma store's only writer keeps, so a compare-and-set reads none back.

An embedded database has one writing process (``memory_store/writer_lock.py``), and every write
of that process goes through a ``ChromaMemoryStore`` under one lock per database
(:class:`SharedWriter`, shared by every store of the process on that database). While the process
holds the writer lock, the current version of every record is known there: read in full once per
kind, then kept by each commit. A compare-and-set then checks against it instead of reading the
versions back from Chroma first (a read costs 3-4 ms with the GIL held, as much as a third of an
upsert). Writes that do not keep them (restore, delete, compaction, a failed commit) forget them,
and so does giving the writer lock up: another process may write before it is taken again.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memory_store.chroma_client import read_versions
from memory_store.group_commit import WriteRequest
from memory_store.memories import MemoryRecord
from memory_store.writer_lock import WriterLock


class SharedWriter:
    """The lock and the kept versions of one embedded database in this process (module doc)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.versions: dict[str, dict[str, int]] = {}  # kind -> entity id -> version
        self.taken = 0  # the writer lock's ``taken`` the versions were kept under

    def kept(self, kind: str, collection: Any, lock: WriterLock | None) -> dict[str, int] | None:
        """The versions of ``kind`` (``self.lock`` held), read in full first; None: not kept.

        Kept only while this process holds the writer lock ``lock``, read again once it was given
        up and taken again.
        """
        if lock is None or not lock.held:
            return None
        if lock.taken != self.taken:
            self.versions.clear()
            self.taken = lock.taken
        if kind not in self.versions:
            self.versions[kind] = read_versions(collection)
        return self.versions[kind]

    @contextmanager
    def changing(self, kind: str | None = None) -> Iterator[None]:
        """The lock around a write that does not keep the versions: they are forgotten after."""
        with self.lock:
            try:
                yield
            finally:
                self.forget(kind)

    def forget(self, kind: str | None = None) -> None:
        """Drop the kept versions (of one kind, or all); called after the write that staled them."""
        if kind is None:
            self.versions.clear()
        else:
            self.versions.pop(kind, None)


_WRITERS: weakref.WeakValueDictionary[str, SharedWriter] = weakref.WeakValueDictionary()
_WRITERS_LOCK = threading.Lock()


def writer_for(path: Path) -> SharedWriter:
    """The shared writer of the database at ``path`` (a replaced database file gets a new one)."""
    database = path / "chroma.sqlite3"
    stat = database.stat()
    key = f"{database.resolve()}:{stat.st_dev}:{stat.st_ino}"
    with _WRITERS_LOCK:
        writer = _WRITERS.get(key)
        if writer is None:
            writer = _WRITERS[key] = SharedWriter()
        return writer


def written_by(request: WriteRequest) -> Iterable[MemoryRecord]:
    """The records a committed request wrote."""
    return request.result.written.values() if request.result is not None else ()
