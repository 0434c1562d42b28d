"""The persisted privacy choices of a store: who opted out of being a neighbour, who was deleted.

Two tables of the workspace's event log file: ``privacy`` (opt-outs, by user id) and
``tombstones`` (deletions). A tombstone keeps no id: only a salted SHA-256 of it (so a re-index
from the source data can recognise and exclude the user) and the user's code in the catalog
snapshot. Reads use a read-only connection (readers never take SQLite's write lock); the tables
are created with the rest of the event log (``memory_store/event_db.py``). The choices are loaded
into ``Workspace.opted_out`` / ``Workspace.deleted`` when the workspace opens and whenever
another process records one (``Workspace.sync``). ``services/privacy.py`` makes the choices.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

from memory_store.privacy_epoch import bump_epoch

TOMBSTONE_PREFIX = "sha256:"
_PLACEHOLDER = re.compile(r"^deleted-[0-9a-f]{16}$")


def tombstone_of(user_id: str) -> str:
    """The key a deletion keeps instead of the user id."""
    digest = hashlib.sha256(b"memrec-deleted-user\0" + str(user_id).encode("utf-8"))
    return TOMBSTONE_PREFIX + digest.hexdigest()


def placeholder_id(user_id: str) -> str:
    """The id that replaces a deleted user's id in the catalog snapshot (codes stay stable)."""
    return "deleted-" + tombstone_of(user_id)[len(TOMBSTONE_PREFIX) :][:16]


def is_placeholder(user_id: str) -> bool:
    """Whether an id is a deleted user's placeholder."""
    return bool(_PLACEHOLDER.match(user_id))


class DeletedUsers:
    """The deleted users of a workspace: membership by id, without keeping any id."""

    def __init__(self, tombstones: Iterable[str] = ()) -> None:
        self.tombstones: set[str] = set(tombstones)

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, str) and (
            tombstone_of(user_id) in self.tombstones or user_id in self.tombstones
        )

    def __len__(self) -> int:
        return len(self.tombstones)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.tombstones))

    def add(self, user_id: str) -> None:
        """Mark a user id deleted."""
        self.tombstones.add(tombstone_of(user_id))

    def copy(self) -> DeletedUsers:
        """An independent copy."""
        return DeletedUsers(self.tombstones)


class PrivacyState(BaseModel):
    """The persisted privacy choices of one workspace."""

    opted_out: set[str] = Field(default_factory=set, description="users who opted out")
    deleted: set[str] = Field(default_factory=set, description="tombstones of deleted users")
    deleted_codes: set[int] = Field(
        default_factory=set, description="catalog codes of the deleted users"
    )
    codes: dict[str, int] = Field(default_factory=dict, description="tombstone -> catalog code")

    def is_deleted(self, user_id: str) -> bool:
        """Whether that user id was deleted."""
        return tombstone_of(user_id) in self.deleted or user_id in self.deleted


@contextmanager
def _reader(path: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection (None when the file does not exist yet)."""
    if not path.exists():
        yield None
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        yield conn
    finally:
        conn.close()


def _rows(conn: sqlite3.Connection, sql: str) -> list[tuple]:
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError as err:
        if "no such table" in str(err):  # a log written before the table existed
            return []
        raise


def read_privacy(events_path: Path) -> PrivacyState:
    """The persisted opt-outs and deletions of an event log file."""
    with _reader(events_path) as conn:
        if conn is None:
            return PrivacyState()
        rows = _rows(conn, "SELECT user_id, opted_out, deleted_at FROM privacy")
        stones = _rows(conn, "SELECT tombstone, user_code FROM tombstones")
    return PrivacyState(
        opted_out={r[0] for r in rows if r[1] and r[2] is None},
        # rows of deletions recorded before tombstones existed still count
        deleted={t for t, _ in stones} | {tombstone_of(r[0]) for r in rows if r[2] is not None},
        deleted_codes={int(c) for _, c in stones if c is not None},
        codes={t: int(c) for t, c in stones if c is not None},
    )


@contextmanager
def _writer(path: Path) -> Iterator[sqlite3.Connection]:
    """A short write transaction on the event log file (secure delete: freed pages zeroed)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


def record_choice(events_path: Path, user_id: str, *, opted_out: bool) -> None:
    """Persist a user's opt-out (or opt-in)."""
    now = time.time()
    with _writer(events_path) as conn:
        conn.execute(
            "INSERT INTO privacy(user_id, opted_out, deleted_at, updated_at) VALUES (?,?,NULL,?)"
            " ON CONFLICT(user_id) DO UPDATE SET opted_out=excluded.opted_out,"
            " updated_at=excluded.updated_at",
            (user_id, int(opted_out), now),
        )
    bump_epoch(events_path.parent)


def record_deletion(events_path: Path, user_id: str, user_code: int | None) -> None:
    """Persist a deletion as a tombstone and forget the user's opt-out row (it holds the id)."""
    with _writer(events_path) as conn:
        conn.execute(
            "INSERT OR IGNORE INTO tombstones(tombstone, user_code, deleted_at) VALUES (?,?,?)",
            (tombstone_of(user_id), user_code, time.time()),
        )
        conn.execute("DELETE FROM privacy WHERE user_id=?", (user_id,))
    bump_epoch(events_path.parent)  # every process on the store sees it before its next read
