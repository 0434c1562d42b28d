"""Salvaging a damaged event log: every row that can still be read goes into a new log.

The damaged file (with its WAL) is kept aside as ``events.sqlite.damaged-<time>``; the new log is
created with the current schema and filled table by table, in chunks of rows, so a damaged page
costs only the rows on it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from memory_store.events import EventLog

logger = logging.getLogger(__name__)

# In dependency order (jobs refer to interactions).
TABLES = ("interactions", "jobs", "audit", "privacy", "tombstones")
_CHUNK = 500


def salvage_event_log(path: Path, dataset: str | None = None) -> dict[str, int]:
    """Move a damaged log aside and copy its readable rows into a new one; rows per table."""
    stamp = int(time.time())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{aside}{suffix}"))
    EventLog(path, dataset=dataset).close()  # the new, empty log with the current schema
    counts: dict[str, int] = {}
    try:
        src = sqlite3.connect(f"file:{aside}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.DatabaseError as err:
        logger.error("nothing could be read from %s: %s", aside, err)
        return counts
    dst = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        for table in TABLES:
            counts[table] = _copy_table(src, dst, table)
    finally:
        src.close()
        dst.close()
    logger.warning("salvaged %s into a new event log (damaged file kept as %s)", counts, aside)
    return counts


def _copy_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> int:
    try:
        columns = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
        top = src.execute(f"SELECT MAX(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return 0
    wanted = [r[1] for r in dst.execute(f"PRAGMA table_info({table})")]
    shared = [c for c in columns if c in wanted]
    if not shared:
        return 0
    names = ", ".join(shared)
    marks = ", ".join("?" for _ in shared)
    copied = 0
    for low in range(0, top + 1, _CHUNK):
        try:
            rows = src.execute(
                f"SELECT {names} FROM {table} WHERE rowid BETWEEN ? AND ?",
                (low, low + _CHUNK - 1),
            ).fetchall()
        except sqlite3.DatabaseError:
            continue  # a damaged page: its rows are lost, the others are kept
        dst.execute("BEGIN")
        dst.executemany(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", rows)
        dst.execute("COMMIT")
        copied += len(rows)
    return copied
