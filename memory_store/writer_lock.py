"""One writer per embedded store: an exclusive file lock on ``<store>/writer.lock``.

Embedded Chroma and the store's files are safe for one writing process only, so the first process
that writes (records an interaction, claims a job, writes a memory, indexes, deletes) takes the
lock and keeps it until it exits; the kernel releases it when the process dies, even by SIGKILL,
so a crash never leaves a stale lock. Readers never take it. A second writer waits a bounded
time (``MEMREC_LOCK_WAIT_S``, default 10 s) and then gets :class:`StoreLocked`, which names the
holder (pid, host, command, since when).

The lock is per process: every workspace of one process on the same store shares it (the
in-process locks serialize those), and a forked child shares its parent's lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from dataio.files import DiskFull, is_disk_full
from schemas.context import env_number

LOCK_FILE = "writer.lock"
WAIT_ENV = "MEMREC_LOCK_WAIT_S"
DEFAULT_WAIT_S = 10.0


class StoreLocked(RuntimeError):
    """Another process holds the store's writer lock."""

    def __init__(self, path: Path, holder: dict[str, object], waited_s: float) -> None:
        since = holder.get("since")
        when = (
            datetime.fromtimestamp(float(since)).strftime("%Y-%m-%d %H:%M:%S")
            if isinstance(since, int | float)
            else "?"
        )
        who = (
            f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"({holder.get('command', '?')}) since {when}"
        )
        super().__init__(
            f"the store {path.parent} is being written by another process: {who}; waited "
            f"{waited_s:.0f} s. One process writes an embedded store: send the write to that "
            f"process (e.g. the server), stop it, or wait longer with {WAIT_ENV}=<seconds>. "
            "Several writers need the Chroma server deployment (docs/SCALE_OUT.md)"
        )
        self.path = path
        self.holder = holder


def lock_wait_s() -> float:
    """How long a writer waits for the lock (``MEMREC_LOCK_WAIT_S``)."""
    return float(env_number(WAIT_ENV, float, DEFAULT_WAIT_S, 0, "a number of seconds"))


def _command() -> str:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    text = " ".join(argv)
    return text if len(text) <= 160 else text[:159] + "\u2026"


class WriterLock:
    """The writer lock of one store folder (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None
        self._mutex = threading.Lock()
        # times this process took the lock: what it knows of the store from before a later
        # take may be stale (another process may have written in between)
        self.taken = 0

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (a forked child shares its parent's)."""
        return self._fd is not None

    def holder(self) -> dict[str, object]:
        """What the lock file says about its holder ({} when unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self, wait_s: float | None = None) -> None:
        """Take the lock (no-op when held); StoreLocked after ``wait_s`` seconds of trying."""
        with self._mutex:
            if self._fd is not None:  # held, or inherited by a forked child (same description)
                return
            wait = lock_wait_s() if wait_s is None else wait_s
            self._fd = self._take(wait)
            self.taken += 1

    def _take(self, wait_s: float) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if is_disk_full(err):
                raise DiskFull(self.path, err) from err
            raise
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= wait_s:
                    os.close(fd)
                    raise StoreLocked(self.path, self.holder(), waited) from None
                time.sleep(min(0.05, max(0.0, wait_s - waited)))
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command(),
            "since": time.time(),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:  # the holder note is for humans; the lock itself is what counts
            pass
        return fd

    def fileno(self) -> int | None:
        """The locked file's descriptor while held (a child given it keeps the lock held too)."""
        return self._fd

    def release(self) -> None:
        """Give the lock up (processes normally keep it until they exit)."""
        with self._mutex:
            if self._fd is None:
                return
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


_LOCKS: dict[Path, WriterLock] = {}
_LOCKS_MUTEX = threading.Lock()


def writer_lock(directory: Path) -> WriterLock:
    """The process-wide writer lock object of a store folder."""
    key = Path(directory).resolve()
    with _LOCKS_MUTEX:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = WriterLock(key)
        return lock


def probe(directory: Path) -> dict[str, object] | None:
    """The holder of a store's lock when another process holds it, else None (no waiting)."""
    path = Path(directory) / LOCK_FILE
    if writer_lock(directory).held or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return writer_lock(directory).holder() or {"pid": "?"}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
