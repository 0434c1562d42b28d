"""Crash-safe store files: write to a temporary name, fsync, rename, fsync the folder.

A reader (or a process started after a crash) sees either the old file or the complete new one,
never half a file; a failed write (full disk, quota, a kill) leaves at most a ``.*.tmp`` file that
the next write of the same file replaces. ``DiskFull`` says which file could not be written and
what to do, instead of a raw ``OSError``.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class StoreWriteError(OSError):
    """A store file could not be written; the message names the file."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"could not write {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class DiskFull(StoreWriteError):
    """No space (or quota, or file size limit) left for a store file."""

    def __init__(self, path: Path, err: OSError | str) -> None:
        if isinstance(err, OSError):
            what = os.strerror(err.errno) if err.errno else str(err)
        else:
            what = err
        super().__init__(
            path, f"{what}; free space on that disk and run the command again (nothing was changed)"
        )
        self.errno = errno.ENOSPC


def is_disk_full(err: BaseException) -> bool:
    """Whether an OSError means no space / quota / file size limit."""
    return isinstance(err, OSError) and err.errno in _FULL


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (no-op where that is impossible)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: Path | str, mode: str = "wb") -> Iterator[IO]:
    """A file handle whose content replaces ``path`` only when the block ends without error."""
    path = Path(path)
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open: mode must be 'wb' or 'w', got {mode!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with open(temporary, mode, **kwargs) as fh:  # type: ignore[call-overload]
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
        fsync_dir(path.parent)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        if is_disk_full(err):
            raise DiskFull(path, err) from err
        if isinstance(err, StoreWriteError):
            raise
        raise StoreWriteError(path, str(err)) from err
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically and durably."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: Path | str, write: Callable[[IO[bytes]], object]) -> None:
    """Replace ``path`` with what ``write(file)`` writes (numpy, scipy, pickle writers)."""
    with atomic_open(path, "wb") as fh:
        write(fh)


def file_digest(path: Path | str) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def leftover_temporaries(directory: Path) -> list[Path]:
    """``.*.tmp`` files left by writes that were interrupted (safe to delete)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob(".*.tmp") if p.is_file())
