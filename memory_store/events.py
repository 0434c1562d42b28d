"""Durable event log, propagation job queue and memory-write audit trail, in one SQLite file.

An interaction and its propagation job are committed in one transaction before the request that
recorded them returns; a worker claims jobs under a lease, so a job whose worker died is picked up
again after ``reclaim_expired``. Every memory write is audited (previous text, new text, cause,
version), which makes writes idempotent per cause and lets any past version be restored.

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` (a commit survives a crash of
the process; only an OS crash or power loss can drop the last commits), except the commit of an
interaction, which runs with ``synchronous=FULL`` (fsync of the WAL on commit): an interaction is
the one thing we promise to the caller and cannot recompute, whereas a lost job transition or
audit row is repaired by re-running the idempotent job.

Threading: one connection per ``EventLog`` guarded by a lock. SQLite serializes writers anyway and
reads take microseconds; a single connection avoids leaking per-thread connections from the thread
pools of asyncio (``to_thread``) and of request handlers. Several ``EventLog`` objects (or
processes) on the same file coordinate through SQLite's own locks (``BEGIN IMMEDIATE`` plus
``busy_timeout``).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, Field

from nodes.roles import InteractionEvent

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
JobStatus = Literal["pending", "running", "done", "failed"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS interactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    interaction_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts REAL NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_user ON interactions(user_id, seq);
CREATE TABLE IF NOT EXISTS jobs (
    interaction_id TEXT PRIMARY KEY
        REFERENCES interactions(interaction_id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_owner TEXT,
    lease_expires_at REAL,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(status, next_attempt_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    previous_text TEXT,
    new_text TEXT NOT NULL,
    cause TEXT NOT NULL,
    at REAL NOT NULL,
    UNIQUE (kind, entity_id, version)
);
CREATE INDEX IF NOT EXISTS audit_cause ON audit(cause);
"""

_JOB_COLUMNS = (
    "j.interaction_id, j.status, j.attempts, j.next_attempt_at, j.lease_owner, "
    "j.lease_expires_at, j.last_error, j.created_at, j.updated_at"
)
_AUDIT_COLUMNS = "a.id, a.kind, a.entity_id, a.version, a.previous_text, a.new_text, a.cause, a.at"


class SchemaMismatch(RuntimeError):
    """The database file was written by another schema version of the event log."""


class InteractionConflict(ValueError):
    """An interaction id was recorded again with a different user, item or kind."""


class JobRow(BaseModel):
    """One propagation job as stored."""

    interaction_id: str = Field(description="the interaction this job propagates")
    status: JobStatus = Field(description="pending, running, done or failed (parked)")
    attempts: int = Field(description="how many times a worker claimed it")
    next_attempt_at: float = Field(description="unix time before which it is not claimed")
    lease_owner: str | None = Field(None, description="the worker holding it while running")
    lease_expires_at: float | None = Field(None, description="when a running lease lapses")
    last_error: str | None = Field(None, description="the error of the last failed attempt")
    created_at: float = Field(description="unix time the job was created")
    updated_at: float = Field(description="unix time of the last status change")


class InteractionRow(BaseModel):
    """An interaction with its position in the log."""

    seq: int = Field(description="monotonic log position; pass as since_seq to read only newer")
    recorded_at: float = Field(description="unix time the log committed it")
    event: InteractionEvent = Field(description="the interaction itself")


class AuditRow(BaseModel):
    """One audited memory write."""

    id: int = Field(description="insertion order")
    kind: str = Field(description="user or item")
    entity_id: str = Field(description="the user / item id")
    version: int = Field(description="the version this write created")
    previous_text: str | None = Field(description="text before the write (None when unknown)")
    new_text: str = Field(description="text written")
    cause: str = Field(description="interaction id, warmup, rollback:<v>, delete:<user>")
    at: float = Field(description="unix time of the write")


class EventLog:
    """Interactions, their propagation jobs and the audit of memory writes in one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_ms: int = 10_000,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        durable: bool = True,
    ) -> None:
        self.path = Path(path)
        # durable=False skips the fsync per recorded interaction: for throwaway logs
        # (evaluation clones), never for a store that serves users.
        self.durable = durable
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._init_schema()

    # ----------------------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def journal_mode(self) -> str:
        """The SQLite journal mode in effect (``wal``)."""
        with self._lock:
            return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _init_schema(self) -> None:
        with self._tx() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            found = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        if found != str(SCHEMA_VERSION):
            raise SchemaMismatch(
                f"{self.path}: event log schema version {found}, this code reads version "
                f"{SCHEMA_VERSION}; migrate the file or use a new path"
            )

    # ----------------------------------------------------------------------------- interactions

    def record_interaction(
        self,
        user_id: str,
        item_id: str,
        kind: str = "positive",
        ts: float | None = None,
        interaction_id: str | None = None,
    ) -> InteractionEvent:
        """Durably record an interaction and its pending propagation job in one transaction.

        Recording the same ``interaction_id`` twice returns the first event and creates no
        second job; reusing it for another user, item or kind raises InteractionConflict.
        """
        for name, value in (("user_id", user_id), ("item_id", item_id), ("kind", kind)):
            if not value:
                raise ValueError(f"record_interaction: {name} must be a non-empty string")
        now = self._clock()
        event = InteractionEvent(
            interaction_id=interaction_id or uuid.uuid4().hex,
            user_id=user_id,
            item_id=item_id,
            kind=kind,
            ts=now if ts is None else ts,
        )
        with self._lock:
            if not self.durable:
                return self._insert_interaction(event, now)
            self._conn.execute("PRAGMA synchronous=FULL")
            try:
                stored = self._insert_interaction(event, now)
            finally:
                self._conn.execute("PRAGMA synchronous=NORMAL")
        return stored

    def _insert_interaction(self, event: InteractionEvent, now: float) -> InteractionEvent:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO interactions"
                "(interaction_id, user_id, item_id, kind, ts, recorded_at) VALUES (?,?,?,?,?,?)",
                (event.interaction_id, event.user_id, event.item_id, event.kind, event.ts, now),
            )
            if cur.rowcount == 0:
                return self._existing_interaction(conn, event)
            conn.execute(
                "INSERT INTO jobs(interaction_id, status, attempts, next_attempt_at, created_at,"
                " updated_at) VALUES (?, 'pending', 0, ?, ?, ?)",
                (event.interaction_id, now, now, now),
            )
        return event

    @staticmethod
    def _existing_interaction(
        conn: sqlite3.Connection, event: InteractionEvent
    ) -> InteractionEvent:
        row = conn.execute(
            "SELECT * FROM interactions WHERE interaction_id=?", (event.interaction_id,)
        ).fetchone()
        existing = _event(row)
        if (existing.user_id, existing.item_id, existing.kind) != (
            event.user_id,
            event.item_id,
            event.kind,
        ):
            raise InteractionConflict(
                f"interaction {event.interaction_id!r} is already recorded as "
                f"({existing.user_id}, {existing.item_id}, {existing.kind}); got "
                f"({event.user_id}, {event.item_id}, {event.kind}). Reuse an id only to retry "
                "the same interaction."
            )
        return existing

    def get_interaction(self, interaction_id: str) -> InteractionEvent | None:
        """The interaction with that id, or None."""
        rows = self._read("SELECT * FROM interactions WHERE interaction_id=?", (interaction_id,))
        return _event(rows[0]) if rows else None

    def interaction_rows(
        self, user_id: str | None = None, since_seq: int | None = None
    ) -> list[InteractionRow]:
        """Interactions in log order with their seq, optionally one user's / after ``since_seq``."""
        sql, params = "SELECT * FROM interactions WHERE 1=1", list[object]()
        if user_id is not None:
            sql, params = sql + " AND user_id=?", [*params, user_id]
        if since_seq is not None:
            sql, params = sql + " AND seq>?", [*params, since_seq]
        rows = self._read(sql + " ORDER BY seq", tuple(params))
        return [
            InteractionRow(seq=r["seq"], recorded_at=r["recorded_at"], event=_event(r))
            for r in rows
        ]

    def interactions(
        self, user_id: str | None = None, since_seq: int | None = None
    ) -> list[InteractionEvent]:
        """Interactions in log order, optionally one user's and / or only after ``since_seq``."""
        return [row.event for row in self.interaction_rows(user_id, since_seq)]

    def delete_user(self, user_id: str) -> int:
        """Remove a user's interactions and their jobs; returns how many interactions went.

        Audit rows stay (they describe memory versions); read ``writes_caused_by_user`` before
        deleting if those writes must be undone.
        """
        with self._tx() as conn:
            conn.execute(
                "DELETE FROM jobs WHERE interaction_id IN "
                "(SELECT interaction_id FROM interactions WHERE user_id=?)",
                (user_id,),
            )
            return conn.execute("DELETE FROM interactions WHERE user_id=?", (user_id,)).rowcount

    # ----------------------------------------------------------------------------- jobs

    def claim_job(self, owner: str, lease_s: float = 60) -> InteractionEvent | None:
        """Atomically move the oldest due pending job to running under ``owner``'s lease."""
        if lease_s <= 0:
            raise ValueError(f"claim_job: lease_s must be > 0 seconds, got {lease_s}")
        now = self._clock()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT i.* FROM jobs j JOIN interactions i USING (interaction_id) "
                "WHERE j.status='pending' AND j.next_attempt_at<=? ORDER BY i.seq LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status='running', attempts=attempts+1, lease_owner=?,"
                " lease_expires_at=?, updated_at=? WHERE interaction_id=?",
                (owner, now + lease_s, now, row["interaction_id"]),
            )
        return _event(row)

    def complete_job(self, interaction_id: str, owner: str) -> bool:
        """Mark a job done; False (and nothing changes) when ``owner`` no longer holds it."""
        with self._tx() as conn:
            changed = conn.execute(
                "UPDATE jobs SET status='done', lease_owner=NULL, lease_expires_at=NULL,"
                " updated_at=? WHERE interaction_id=? AND status='running' AND lease_owner=?",
                (self._clock(), interaction_id, owner),
            ).rowcount
        if not changed:
            logger.warning("complete_job: %s does not hold job %s; ignored", owner, interaction_id)
        return bool(changed)

    def fail_job(
        self,
        interaction_id: str,
        owner: str,
        error: str,
        *,
        max_attempts: int = 5,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
    ) -> JobRow | None:
        """Send a failed attempt back to pending after a jittered exponential backoff.

        After ``max_attempts`` claims the job is parked as ``failed`` (visible, retryable with
        ``retry_failed``). Returns the updated job, or None when ``owner`` no longer holds it.
        """
        if max_attempts < 1:
            raise ValueError(f"fail_job: max_attempts must be >= 1, got {max_attempts}")
        now = self._clock()
        with self._tx() as conn:
            job = self._held_job(conn, interaction_id, owner)
            if job is None:
                logger.warning("fail_job: %s does not hold job %s; ignored", owner, interaction_id)
                return None
            parked = job.attempts >= max_attempts
            delay = min(max_backoff_s, base_backoff_s * 2 ** (job.attempts - 1))
            delay *= 1 + 0.5 * self._rng.random()
            conn.execute(
                "UPDATE jobs SET status=?, next_attempt_at=?, lease_owner=NULL,"
                " lease_expires_at=NULL, last_error=?, updated_at=? WHERE interaction_id=?",
                ("failed" if parked else "pending", now + delay, error, now, interaction_id),
            )
            if parked:
                logger.error(
                    "job %s parked after %d attempts: %s", interaction_id, job.attempts, error
                )
            return self._job(conn, interaction_id)

    def reclaim_expired(self, now: float | None = None, *, max_attempts: int | None = None) -> int:
        """Return running jobs whose lease lapsed to pending (their worker died); returns how many.

        With ``max_attempts``, a job that already used them all is parked as failed instead, so a
        job that kills its worker every time cannot loop forever.
        """
        now = self._clock() if now is None else now
        with self._tx() as conn:
            if max_attempts is not None:
                conn.execute(
                    "UPDATE jobs SET status='failed', lease_owner=NULL, lease_expires_at=NULL,"
                    " last_error='lease expired on the last attempt', updated_at=?"
                    " WHERE status='running' AND lease_expires_at<=? AND attempts>=?",
                    (now, now, max_attempts),
                )
            return conn.execute(
                "UPDATE jobs SET status='pending', next_attempt_at=?, lease_owner=NULL,"
                " lease_expires_at=NULL, updated_at=?"
                " WHERE status='running' AND lease_expires_at<=?",
                (now, now, now),
            ).rowcount

    def retry_failed(self, interaction_id: str | None = None) -> int:
        """Put parked jobs (all, or one) back to pending with a fresh attempt budget."""
        now = self._clock()
        sql = (
            "UPDATE jobs SET status='pending', attempts=0, next_attempt_at=?, updated_at=?"
            " WHERE status='failed'"
        )
        params: tuple[object, ...] = (now, now)
        if interaction_id is not None:
            sql, params = sql + " AND interaction_id=?", (*params, interaction_id)
        with self._tx() as conn:
            return conn.execute(sql, params).rowcount

    def jobs(self, status: JobStatus | None = None, limit: int = 100) -> list[JobRow]:
        """Jobs in interaction order, optionally only those with ``status``."""
        if status is not None and status not in JOB_STATUSES:
            raise ValueError(
                f"jobs: unknown status {status!r}; accepted: {', '.join(JOB_STATUSES)}"
            )
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN interactions i USING (interaction_id)"
        params: tuple[object, ...] = ()
        if status is not None:
            sql, params = sql + " WHERE j.status=?", (status,)
        rows = self._read(sql + " ORDER BY i.seq LIMIT ?", (*params, limit))
        return [JobRow(**dict(r)) for r in rows]

    def get_job(self, interaction_id: str) -> JobRow | None:
        """The job of that interaction, or None."""
        with self._lock:
            return self._job(self._conn, interaction_id)

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status (every status present, zeros included)."""
        rows = self._read("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
        return {status: 0 for status in JOB_STATUSES} | {r["status"]: r["n"] for r in rows}

    @staticmethod
    def _job(conn: sqlite3.Connection, interaction_id: str) -> JobRow | None:
        row = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j WHERE j.interaction_id=?", (interaction_id,)
        ).fetchone()
        return JobRow(**dict(row)) if row else None

    def _held_job(self, conn: sqlite3.Connection, interaction_id: str, owner: str) -> JobRow | None:
        job = self._job(conn, interaction_id)
        if job is None or job.status != "running" or job.lease_owner != owner:
            return None
        return job

    # ----------------------------------------------------------------------------- audit

    def audit_write(
        self,
        kind: str,
        entity_id: str,
        version: int,
        previous_text: str | None,
        new_text: str,
        cause: str,
        at: float | None = None,
    ) -> bool:
        """Record one memory write; a replay of the same (kind, entity, version) is ignored.

        Returns True when the row was inserted, False when that version was already audited.
        """
        with self._tx() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO audit(kind, entity_id, version, previous_text, new_text,"
                " cause, at) VALUES (?,?,?,?,?,?,?)",
                (
                    kind,
                    entity_id,
                    version,
                    previous_text,
                    new_text,
                    cause,
                    self._clock() if at is None else at,
                ),
            ).rowcount
        return bool(inserted)

    def history(self, kind: str, entity_id: str) -> list[AuditRow]:
        """Every audited write of one memory, oldest version first."""
        return self._audit("WHERE a.kind=? AND a.entity_id=? ORDER BY a.version", (kind, entity_id))

    def version_text(self, kind: str, entity_id: str, version: int) -> str | None:
        """The text a memory had at ``version``, or None when that version was never audited."""
        rows = self._read(
            "SELECT new_text FROM audit WHERE kind=? AND entity_id=? AND version=?",
            (kind, entity_id, version),
        )
        return rows[0]["new_text"] if rows else None

    def applied(self, cause: str, kind: str, entity_id: str) -> bool:
        """Whether ``cause`` has already written this memory."""
        return bool(
            self._read(
                "SELECT 1 FROM audit WHERE cause=? AND kind=? AND entity_id=? LIMIT 1",
                (cause, kind, entity_id),
            )
        )

    def writes_caused_by(self, cause: str) -> list[AuditRow]:
        """Every write made by one cause, in write order."""
        return self._audit("WHERE a.cause=? ORDER BY a.id", (cause,))

    def writes_caused_by_user(self, user_id: str) -> list[AuditRow]:
        """Every write caused by one of the user's (still recorded) interactions, in write order."""
        return self._audit(
            "JOIN interactions i ON i.interaction_id=a.cause WHERE i.user_id=? ORDER BY a.id",
            (user_id,),
        )

    def _audit(self, where: str, params: tuple[object, ...]) -> list[AuditRow]:
        rows = self._read(f"SELECT {_AUDIT_COLUMNS} FROM audit a {where}", params)
        return [AuditRow(**dict(r)) for r in rows]


def _event(row: sqlite3.Row) -> InteractionEvent:
    return InteractionEvent(
        interaction_id=row["interaction_id"],
        user_id=row["user_id"],
        item_id=row["item_id"],
        kind=row["kind"],
        ts=row["ts"],
    )
