"""The persisted privacy choices of a store: who opted out of being a neighbour, who was deleted.

The choices live in a ``privacy`` table of the workspace's event log file (its own ``CREATE TABLE
IF NOT EXISTS``, on a short-lived connection of this module), so they survive restarts and are
loaded into ``Workspace.opted_out`` / ``Workspace.deleted`` when the workspace opens.
``services/privacy.py`` makes the choices (opt-out, deletion with its reverts).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

_SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy (
    user_id TEXT PRIMARY KEY,
    opted_out INTEGER NOT NULL DEFAULT 0,
    deleted_at REAL,
    updated_at REAL NOT NULL
)
"""


class PrivacyState(BaseModel):
    """The persisted privacy choices of one workspace."""

    opted_out: set[str] = Field(default_factory=set, description="users who opted out")
    deleted: set[str] = Field(default_factory=set, description="users deleted (tombstones)")


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A short transaction on the event log file (WAL; waits for other writers)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_SCHEMA)
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


def read_privacy(events_path: Path) -> PrivacyState:
    """The persisted opt-outs and deletions of an event log file."""
    with _connect(events_path) as conn:
        rows = conn.execute("SELECT user_id, opted_out, deleted_at FROM privacy").fetchall()
    return PrivacyState(
        opted_out={r[0] for r in rows if r[1]},
        deleted={r[0] for r in rows if r[2] is not None},
    )


def record_choice(
    events_path: Path, user_id: str, *, opted_out: bool, deleted: bool = False
) -> None:
    """Persist a user's choice (a deletion is never undone by a later opt-in)."""
    now = time.time()
    with _connect(events_path) as conn:
        conn.execute(
            "INSERT INTO privacy(user_id, opted_out, deleted_at, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT(user_id) DO UPDATE SET opted_out=excluded.opted_out,"
            " deleted_at=COALESCE(privacy.deleted_at, excluded.deleted_at),"
            " updated_at=excluded.updated_at",
            (user_id, int(opted_out), now if deleted else None, now),
        )
