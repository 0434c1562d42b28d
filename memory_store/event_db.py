"""The SQLite file behind the event log: one connection, the schema, transactions.

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

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from dataio.files import DiskFull
from memory_store.manifest import DamagedStore, repair_command
from schemas.records import InteractionEvent

SCHEMA_VERSION = 2
# Columns added since version 1 (added in place when an older file is opened).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE jobs ADD COLUMN fanout TEXT",
        "ALTER TABLE jobs ADD COLUMN result TEXT",
    ),
}

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
    updated_at REAL NOT NULL,
    fanout TEXT,
    result TEXT
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
CREATE TABLE IF NOT EXISTS privacy (
    user_id TEXT PRIMARY KEY,
    opted_out INTEGER NOT NULL DEFAULT 0,
    deleted_at REAL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    tombstone TEXT PRIMARY KEY,
    user_code INTEGER,
    deleted_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS model_calls (
    cause TEXT NOT NULL,
    step TEXT NOT NULL,
    usage TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (cause, step)
);
"""


_TABLES = frozenset(
    {"meta", "interactions", "jobs", "audit", "privacy", "tombstones", "model_calls"}
)
PRIVACY_MARK_SQL = (
    "SELECT (SELECT COUNT(*) FROM tombstones), "
    "(SELECT COALESCE(MAX(deleted_at), 0) FROM tombstones), "
    "(SELECT COUNT(*) FROM privacy), (SELECT COALESCE(MAX(updated_at), 0) FROM privacy)"
)


class SchemaMismatch(RuntimeError):
    """The database file was written by another schema version of the event log."""


class StoreBusy(RuntimeError):
    """Another connection held the event log's SQLite lock for longer than the wait allowed."""


class ReadOnlyLog(RuntimeError):
    """A write was attempted on an event log opened read-only."""


def translate_error(err: sqlite3.Error, path: Path, dataset: str, waited_s: float) -> Exception:
    """A clear error for a raw SQLite one: busy, full disk, damaged file; else ``err`` itself."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text or "busy" in text:
        return StoreBusy(
            f"{path}: another connection kept the event log locked for {waited_s:.0f} s "
            "(a long transaction or a crashed tool holding it); nothing was written. Retry, or "
            "find the holder with `fuser` / `lsof` on that file"
        )
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return DiskFull(path, "database or disk is full")
    if (
        name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
        or "malformed" in text
        or ("not a database" in text)
    ):
        return DamagedStore(
            path,
            f"the event log is damaged ({err})",
            repair_command(dataset) + " salvages its readable rows into a new log",
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return ReadOnlyLog(f"{path} was opened read-only; this command cannot write to it")
    return err


class EventDb:
    """One SQLite connection on the event log file, shared by its three parts.

    ``memory_store/interactions.py``, ``memory_store/jobs.py`` and ``memory_store/audit.py`` each
    add the operations on their tables; ``memory_store/events.EventLog`` combines them.
    ``readonly=True`` opens the file without ever taking SQLite's write lock (read-only commands);
    ``before_write`` runs before every write transaction (the store's writer lock).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_ms: int = 10_000,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        durable: bool = True,
        readonly: bool = False,
        before_write: Callable[[], None] | None = None,
        dataset: str | None = None,
    ) -> None:
        self.path = Path(path)
        # durable=False skips the fsync per recorded interaction: for throwaway logs
        # (evaluation clones), never for a store that serves users.
        self.durable = durable
        self.readonly = readonly
        self.dataset = dataset or self.path.parent.name
        self.before_write = before_write
        self._busy_s = busy_timeout_ms / 1000
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        with self._errors():
            self._conn = self._connect(busy_timeout_ms)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            if readonly:
                self._check_schema()
            else:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
                self._conn.execute("PRAGMA secure_delete=ON")  # deleted rows leave no text
                self._init_schema()

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        timeout = busy_timeout_ms / 1000
        if self.readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"{self.path}: no event log to read")
            return sqlite3.connect(
                f"file:{self.path}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=timeout,
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=timeout
        )

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn raw SQLite errors into the clear ones of :func:`translate_error`."""
        try:
            yield
        except sqlite3.Error as err:
            clear = translate_error(err, self.path, self.dataset, self._busy_s)
            if clear is err:
                raise
            raise clear from err

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            conn = getattr(self, "_conn", None)
            if conn is not None:
                conn.close()

    def __enter__(self) -> Self:
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
        if self.readonly:
            raise ReadOnlyLog(f"{self.path} was opened read-only; this command cannot write to it")
        if self.before_write is not None:
            self.before_write()
        with self._lock, self._errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock, self._errors():
            return self._conn.execute(sql, params).fetchall()

    @contextmanager
    def _durable(self) -> Iterator[None]:
        """Commits inside are fsync'd (``synchronous=FULL``) unless the log is not durable."""
        with self._lock:
            if not self.durable:
                yield
                return
            self._conn.execute("PRAGMA synchronous=FULL")
            try:
                yield
            finally:
                self._conn.execute("PRAGMA synchronous=NORMAL")

    @property
    def claim_lock(self) -> str:
        """SQL appended to a queue scan that claims (SQLite: none, ``BEGIN IMMEDIATE`` locks)."""
        return ""

    @property
    def row_lock(self) -> str:
        """SQL appended to a read-modify-write of one row (SQLite: none)."""
        return ""

    def checkpoint(self, attempts: int = 20) -> bool:
        """Copy the WAL into the database and truncate it (old page images leave the disk).

        Returns False when readers kept it from completing after ``attempts`` tries.
        """
        for attempt in range(attempts):
            with self._lock, self._errors():
                busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                return True
            time.sleep(0.05 * (attempt + 1))
        return False

    def integrity_problem(self) -> str | None:
        """What SQLite's quick check finds wrong with the file (None when it is sound)."""
        try:
            rows = self._read("PRAGMA quick_check")
        except DamagedStore as err:
            return err.reason
        found = [str(r[0]) for r in rows]
        return None if found == ["ok"] else "; ".join(found[:3])

    def data_version(self) -> int:
        """SQLite's data version: changes whenever another connection commits to the file."""
        with self._lock, self._errors():
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def privacy_mark(self) -> tuple[float, ...]:
        """Changes whenever a privacy choice is recorded (cheap; see ``Workspace.sync``)."""
        try:
            row = self._read(PRIVACY_MARK_SQL)[0]
        except sqlite3.OperationalError:  # a read-only log written before these tables existed
            return (0.0, 0.0, 0.0, 0.0)
        return tuple(float(v) for v in row)

    def _init_schema(self) -> None:
        """Create what is missing, migrate an older file; a current one is only read (no lock)."""
        names = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
        if not (_TABLES <= names and self._schema_version() == str(SCHEMA_VERSION)):
            with self._tx() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                found = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                self._migrate(conn, int(found[0]))
        self._check_schema()

    def _schema_version(self) -> str | None:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
            row = None
        return row[0] if row else None

    def _check_schema(self) -> None:
        found = self._schema_version()
        if found != str(SCHEMA_VERSION):
            raise SchemaMismatch(
                f"{self.path}: event log schema version {found}, this code reads version "
                f"{SCHEMA_VERSION}; migrate the file or use a new path"
            )

    @staticmethod
    def _migrate(conn: sqlite3.Connection, found: int) -> str:
        """Bring a file of an older schema version up to ``SCHEMA_VERSION`` in place."""
        if found >= SCHEMA_VERSION or any(
            v not in _MIGRATIONS for v in range(found + 1, SCHEMA_VERSION + 1)
        ):
            return str(found)
        columns = {r["name"] for r in conn.execute("PRAGMA table_info(jobs)").fetchall()}
        for version in range(found + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                if statement.split("ADD COLUMN ")[1].split()[0] not in columns:
                    conn.execute(statement)
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        return str(SCHEMA_VERSION)


def event_from_row(row: Any) -> InteractionEvent:
    """The interaction stored in a row of the interactions table."""
    return InteractionEvent(
        interaction_id=row["interaction_id"],
        user_id=row["user_id"],
        item_id=row["item_id"],
        kind=row["kind"],
        ts=row["ts"],
    )
