"""Locks several writer processes share around a memory's read-check-write on a Chroma server.

Chroma has no transactions, so a compare-and-set on a Chroma server is atomic across processes
only when every writer takes the same lock around its read of the versions and its upsert
(``ChromaMemoryStore.record_lock``). Records hash into ``BUCKETS`` lock slots, taken in ascending
order, so two writers never wait on each other in a cycle.

- :class:`FileRecordLocks`: processes on one host (the event log is a SQLite file there too):
  POSIX byte-range locks on ``<store>/record.locks``, one byte per slot.
- ``memory_store/pg_events.PgRecordLocks``: processes on several hosts sharing a Postgres
  database (``MEMREC_DATABASE_URL``): advisory locks.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

BUCKETS = 1 << 16


def lock_slots(kind: str, ids: Sequence[str]) -> list[int]:
    """The sorted, distinct lock slots of some records (stable across processes and hosts)."""
    slots = {
        int.from_bytes(hashlib.blake2b(f"{kind}:{i}".encode(), digest_size=4).digest(), "big")
        % BUCKETS
        for i in ids
    }
    return sorted(slots)


class FileRecordLocks:
    """Cross-process record locks on one host (see the module docstring).

    POSIX locks belong to the process, so threads of one process do not exclude each other
    here: the store's own in-process lock does that.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._open = threading.Lock()

    def _file(self) -> int:
        with self._open:
            if self._fd is None:  # kept open: closing any descriptor drops the process's locks
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            return self._fd

    @contextmanager
    def __call__(self, kind: str, ids: Sequence[str]) -> Iterator[None]:
        """Hold the slots of ``ids`` (blocking) for the read-check-write inside."""
        fd = self._file()
        held: list[int] = []
        try:
            for slot in lock_slots(kind, ids):
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, slot)
                held.append(slot)
            yield
        finally:
            for slot in reversed(held):
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, slot)
