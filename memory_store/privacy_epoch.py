"""A counter every process on a store can read without I/O: it changes when a privacy choice does.

``<store>/privacy.epoch`` holds one 64-bit counter, memory-mapped (shared) by every process that
opens the store. Recording an opt-out or a deletion bumps it (under a file lock); a process reads it
as plain memory before each request, so checking "did a deletion happen?" costs nanoseconds and no
system call (it is safe on the event loop, where SQLite or ``os.stat`` would be blocking calls).
When it changed, the process reloads the choices from the event log (``Workspace.sync``).

One host only: processes on other hosts (the scaled deployment) need the shared event log's own
change signal.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
from pathlib import Path

EPOCH_FILE = "privacy.epoch"
_SIZE = 8


class PrivacyEpoch:
    """The mapped counter of one store folder (0 when the file cannot be mapped)."""

    def __init__(self, directory: Path, *, create: bool = True) -> None:
        self.path = Path(directory) / EPOCH_FILE
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()
        try:
            if create and not self.path.exists():
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    if os.fstat(fd).st_size < _SIZE:
                        os.pwrite(fd, b"\0" * _SIZE, 0)
                        os.fsync(fd)
                finally:
                    os.close(fd)
            with open(self.path, "r+b") as fh:
                self._map = mmap.mmap(fh.fileno(), _SIZE)
        except (OSError, ValueError):  # a read-only folder or no file yet: the log is still read
            self._map = None

    @property
    def mapped(self) -> bool:
        """Whether the counter file is mapped (else changes cannot be seen without I/O)."""
        return self._map is not None

    def value(self) -> int:
        """The current counter (a memory read)."""
        if self._map is None:
            return 0
        return int(struct.unpack_from("<Q", self._map, 0)[0])

    def bump(self) -> int:
        """Increment the counter for every process; returns the new value."""
        if self._map is None:
            return 0
        with self._lock, open(self.path, "r+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                value = self.value() + 1
                struct.pack_into("<Q", self._map, 0, value)
                self._map.flush()
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return value

    def close(self) -> None:
        """Unmap the file."""
        if self._map is not None:
            self._map.close()
            self._map = None


def bump_epoch(directory: Path) -> None:
    """Tell every process on the store that a privacy choice changed."""
    epoch = PrivacyEpoch(directory)
    try:
        epoch.bump()
    finally:
        epoch.close()
