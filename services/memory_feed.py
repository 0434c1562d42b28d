"""Keep a serving process's memory cache fresh from the audit log, not by re-reading Chroma.

Against a Chroma server, the workspace's read cache (``CachedMemoryStore``) expires every record
after 5 s, so a busy serving process re-reads the memories of its requests from the server all
the time (a third of its CPU, and as much again in the Chroma server). Yet every memory write of
the propagation path (``memory_store/writes.py``) is audited in the shared event log right after
its compare-and-set, with its version. ``MemoryFeed`` polls the new audit rows every ``POLL_S``
and evicts the cached records older than an audited version, so:

- an audited write is seen within about a second (5 s with the expiry alone);
- the expiry becomes a backstop (``BACKSTOP_TTL_S``) for writes that were never audited (a job
  that crashed between its write and its audit, until the next write repairs it; a bulk load);
- when the feed cannot poll for ``STALE_AFTER_S``, the cache goes back to its own expiry.

A read that began before a write may cache the old record after the write's audit row was seen:
rows are checked again for ``RECHECK_S``. Rows committed out of id order are caught by
re-reading ``LOOKBACK`` ids before the last one seen (as the event log's catch-up does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg

from memory_store.cached_store import CachedMemoryStore
from memory_store.pg_events import schema_name

log = logging.getLogger(__name__)

POLL_S = 1.0
BACKSTOP_TTL_S = 60.0
STALE_AFTER_S = 5.0
RECHECK_S = 10.0
LOOKBACK = 256


class MemoryFeed:
    """Evicts a cache's records as the audit log of one dataset's store records newer versions."""

    def __init__(self, store: CachedMemoryStore, database_url: str, dataset: str) -> None:
        self.store = store
        self.url = database_url
        self.table = f'"{schema_name(dataset)}".audit'
        self.own_ttl = store.ttl_s  # the cache's own expiry, used while the feed is down
        self.last_id = 0
        self.polled_at = 0.0  # monotonic time of the last successful poll
        self.evicted = 0
        self._recent: dict[int, tuple[float, str, str, int]] = {}  # id: (seen at, kind, entity, v)
        self._conn: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        """Begin at the end of the log (less ``LOOKBACK``): the cache holds no older writes."""
        row = self._connection().execute(f"SELECT coalesce(max(id), 0) FROM {self.table}")
        self.last_id = max(0, int(row.fetchone()[0]) - LOOKBACK)  # type: ignore[index]
        self.poll()

    def poll(self) -> int:
        """Read the audit rows since the last poll and evict older cached records; how many."""
        rows = (
            self._connection()
            .execute(
                f"SELECT id, kind, entity_id, version FROM {self.table} WHERE id > %s ORDER BY id",
                (max(0, self.last_id - LOOKBACK),),
            )
            .fetchall()
        )
        now = time.monotonic()
        for row_id, kind, entity_id, version in rows:
            self.last_id = max(self.last_id, row_id)
            self._recent.setdefault(row_id, (now, kind, entity_id, version))
        self._recent = {i: r for i, r in self._recent.items() if now - r[0] <= RECHECK_S}
        evicted = sum(self.store.evict_older(k, e, v) for _, k, e, v in self._recent.values())
        self.evicted += evicted
        self.polled_at = now
        self.store.ttl_s = BACKSTOP_TTL_S
        return evicted

    def fall_back(self) -> None:
        """The feed could not poll for a while: the cache expires records on its own again."""
        if time.monotonic() - self.polled_at > STALE_AFTER_S:
            self.store.ttl_s = self.own_ttl

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        return self._conn

    def close(self) -> None:
        """Close the feed's connection; the cache keeps its own expiry from now on."""
        self.store.ttl_s = self.own_ttl
        if self._conn is not None:
            self._conn.close()

    async def run(self) -> None:
        """Poll every ``POLL_S`` until cancelled (the database calls run in a thread)."""
        while True:
            try:
                await asyncio.to_thread(self.poll)
            except psycopg.Error as err:
                log.warning("memory feed: cannot read the audit log (%s); retrying", err)
                self._conn = None
                self.fall_back()
            await asyncio.sleep(POLL_S)
