"""The event log (interactions, jobs, audit) in Postgres, for several processes and hosts at once.

Set ``MEMREC_DATABASE_URL`` (``postgresql://user@host:port/db``) and every process that opens a
store (serving processes, ``memrec worker`` processes, the CLI) uses the same interactions, job
queue and audit trail in that database, one schema per dataset (``memrec_<dataset>``). The
operations are those of the SQLite event log (``memory_store/interactions.py``, ``jobs.py``,
``audit.py``, written once for both): this module supplies the connection, the schema and the
SQL dialect. Jobs are claimed with row locks (``FOR UPDATE SKIP LOCKED``): two workers never
claim one job, and neither waits for the other.

:class:`PgRecordLocks` gives the writers of a Chroma server one compare-and-set across hosts
(advisory locks in the same database, ``memory_store/record_locks.py``).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from memory_store.audit import AuditLog
from memory_store.call_log import CallLog
from memory_store.event_db import PRIVACY_MARK_SQL, SCHEMA_VERSION, EventDb, SchemaMismatch
from memory_store.interactions import InteractionLog
from memory_store.jobs import JobQueue
from memory_store.record_locks import lock_slots

DATABASE_ENV = "MEMREC_DATABASE_URL"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS interactions (
    seq BIGSERIAL PRIMARY KEY,
    interaction_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    recorded_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_user ON interactions(user_id, seq);
CREATE TABLE IF NOT EXISTS jobs (
    interaction_id TEXT PRIMARY KEY
        REFERENCES interactions(interaction_id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_owner TEXT,
    lease_expires_at DOUBLE PRECISION,
    last_error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    fanout TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(status, next_attempt_at);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    previous_text TEXT,
    new_text TEXT NOT NULL,
    cause TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    UNIQUE (kind, entity_id, version)
);
CREATE INDEX IF NOT EXISTS audit_cause ON audit(cause);
CREATE TABLE IF NOT EXISTS model_calls (
    cause TEXT NOT NULL,
    step TEXT NOT NULL,
    usage TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (cause, step)
);
"""


def schema_name(dataset: str) -> str:
    """The Postgres schema of a dataset's event log: ``memrec_<name>``.

    A name that had to be cleaned gets a hash of the original, so two datasets never share one.
    """
    clean = re.sub(r"[^a-z0-9_]", "_", dataset.lower())[:40]
    if clean != dataset:
        clean += "_" + hashlib.sha256(dataset.encode()).hexdigest()[:8]
    return f"memrec_{clean}"


@functools.lru_cache(maxsize=1024)
def to_postgres(sql: str) -> str:
    """The event log's SQL (SQLite dialect) for Postgres: placeholders and ``OR IGNORE``."""
    out = sql.replace("?", "%s")
    if "INSERT OR IGNORE INTO" in out:
        out = out.replace("INSERT OR IGNORE INTO", "INSERT INTO") + " ON CONFLICT DO NOTHING"
    return out


class _Connection:
    """A psycopg connection that speaks the event log's SQL (``to_postgres``)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.conn.execute(to_postgres(sql), tuple(params))


class PgEventDb(EventDb):
    """The event log's storage on Postgres (see the module docstring)."""

    def __init__(
        self,
        url: str,
        dataset: str,
        *,
        local_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        # ``path`` names the local file the per-host parts still use (privacy choices)
        self.path = Path(local_path) if local_path is not None else Path("events.sqlite")
        self.url = url
        self.dataset = dataset
        self.readonly = False  # several writers share Postgres: no writer lock, row locks
        self.before_write: Callable[[], None] | None = None
        self.schema = schema_name(dataset)
        self.durable = True  # every Postgres commit is durable (synchronous_commit)
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self._pg = self._pg_connect()
        self._init_schema()

    def _pg_connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        conn.execute(f'SET search_path TO "{self.schema}"')
        return conn

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._pg.close()

    def checkpoint(self, attempts: int = 20) -> bool:
        """Postgres has no WAL file of ours to truncate: nothing to do."""
        return True

    def integrity_problem(self) -> str | None:
        """Postgres checks its own pages; a reachable database is sound for us."""
        return None

    def privacy_mark(self) -> tuple[float, ...]:
        """Privacy choices stay in the host's local file (``path``): its mark, as on SQLite."""
        if not self.path.exists():
            return (0.0, 0.0, 0.0, 0.0)
        with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as conn:
            try:
                row = conn.execute(PRIVACY_MARK_SQL).fetchone()
            except sqlite3.OperationalError:  # a local file without the privacy tables
                return (0.0, 0.0, 0.0, 0.0)
        return tuple(float(v) for v in row)

    def journal_mode(self) -> str:
        """Postgres has no journal mode; its WAL is always on."""
        return "postgres"

    @property
    def claim_lock(self) -> str:
        """Row locks: a claiming transaction skips rows another one is claiming."""
        return " FOR UPDATE OF j SKIP LOCKED"

    @property
    def row_lock(self) -> str:
        """A read-modify-write of one job waits for the other writer of that row."""
        return " FOR UPDATE"

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock, self._reconnecting(), self._pg.transaction():
            yield _Connection(self._pg)

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        with self._lock, self._reconnecting():
            return self._pg.execute(to_postgres(sql), params).fetchall()

    @contextmanager
    def _reconnecting(self) -> Iterator[None]:
        """Reopen a connection the server closed (restart, idle timeout) before using it."""
        if self._pg.closed or self._pg.broken:
            self._pg = self._pg_connect()
        yield

    @contextmanager
    def _durable(self) -> Iterator[None]:
        with self._lock:
            yield

    def _init_schema(self) -> None:
        with self._tx() as conn:
            # several processes start at once: one creates the tables, the others wait
            conn.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(self.schema),))
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            found = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if found["value"] != str(SCHEMA_VERSION):
            raise SchemaMismatch(
                f"{self.url} schema {self.schema}: event log schema version {found['value']}, "
                f"this code reads version {SCHEMA_VERSION}; migrate it or use another database"
            )


def _lock_key(name: str) -> int:
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PgEventLog(InteractionLog, JobQueue, AuditLog, CallLog, PgEventDb):
    """Interactions, their propagation jobs and the audit of memory writes in Postgres."""


class PgRecordLocks:
    """Advisory locks in Postgres around each read-check-write of a Chroma server's records.

    Session locks on a connection of their own, taken in ascending slot order and released after
    the upsert; a process that dies loses its session and with it its locks.
    """

    def __init__(self, url: str, dataset: str) -> None:
        self.url = url
        self.space = _lock_key(f"records:{schema_name(dataset)}") % (2**31)
        self._mutex = threading.Lock()
        self._pg: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._pg is None or self._pg.closed or self._pg.broken:
            self._pg = psycopg.connect(self.url, autocommit=True)
        return self._pg

    @contextmanager
    def __call__(self, kind: str, ids: Sequence[str]) -> Iterator[None]:
        """Hold the slots of ``ids`` for the read-check-write inside."""
        slots = lock_slots(kind, ids)
        with self._mutex:
            conn = self._connection()
            conn.execute(
                "SELECT pg_advisory_lock(%s, s) FROM (SELECT unnest(%s::int[]) AS s ORDER BY 1) q",
                (self.space, slots),
            )
            try:
                yield
            finally:
                conn.execute(
                    "SELECT pg_advisory_unlock(%s, s) FROM unnest(%s::int[]) AS s",
                    (self.space, slots),
                )
