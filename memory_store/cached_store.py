"""A read-through, write-through cache in front of a memory store.

Reads on the online path (the user's memory, the curated neighbours' memories, their versions for
the facet cache) are served from process memory; every write goes to the store first and the cache
keeps what the store returned. A compare-and-set conflict drops the cached record, so a writer that
lost a race re-reads the store. With several processes writing to one Chroma server, ``ttl_s``
bounds how stale a read may be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from memory_store.memories import (
    Batch,
    BatchPut,
    MemoryKind,
    MemoryRecord,
    MemoryStore,
    PartialPut,
    VersionConflict,
    put_batches,
)


class CachedMemoryStore:
    """Wraps any MemoryStore; same interface.

    ``before_write`` runs before every write (the store's writer lock: see ``writer_lock.py``).
    """

    def __init__(
        self,
        inner: MemoryStore,
        ttl_s: float | None = None,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.ttl_s = ttl_s
        self.before_write = before_write
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], tuple[float, MemoryRecord | None]] = {}
        self._generation = 0  # bumped by clear(): reads that started before it are not kept
        if hasattr(inner, "on_written"):  # the store tells what it wrote as soon as it has
            inner.on_written = self._written

    def _fresh(self, key: tuple[str, str]) -> tuple[bool, MemoryRecord | None]:
        hit = self._records.get(key)
        if hit is None or (self.ttl_s is not None and time.monotonic() - hit[0] > self.ttl_s):
            return False, None
        return True, hit[1]

    def _keep(
        self, kind: str, entity_id: str, record: MemoryRecord | None, generation: int | None = None
    ) -> None:
        """Cache a record; a read begun before a ``clear`` (``generation`` older) is dropped.

        So is a read older than the cached version (a warm-up read that a write overtook).
        """
        with self._lock:
            if generation is None or generation == self._generation:
                cached = self._records.get((kind, entity_id))
                if cached and cached[1] and record and cached[1].version > record.version:
                    return
                self._records[(kind, entity_id)] = (time.monotonic(), record)

    def preload(
        self,
        kind: MemoryKind,
        entity_ids: Sequence[str],
        batch: int = 2000,
        stop: threading.Event | None = None,
    ) -> int:
        """Read many records into the cache in batches (a warm start); returns how many.

        ``stop`` is checked between batches, so a process can end a warm-up cleanly.
        """
        loaded = 0
        for start in range(0, len(entity_ids), batch):
            if stop is not None and stop.is_set():
                break
            chunk = [i for i in entity_ids[start : start + batch] if (kind, i) not in self._records]
            loaded += len(self.get_many(kind, chunk)) if chunk else 0
        return loaded

    def get(self, kind: MemoryKind, entity_id: str) -> MemoryRecord | None:
        """Cached read."""
        found, record = self._fresh((kind, entity_id))
        if found:
            return record
        generation = self._generation
        record = self.inner.get(kind, entity_id)
        self._keep(kind, entity_id, record, generation)
        return record

    def get_many(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, MemoryRecord]:
        """Cached batch read: one store call for the ids not cached yet."""
        out: dict[str, MemoryRecord] = {}
        missing = []
        for entity_id in entity_ids:
            found, record = self._fresh((kind, entity_id))
            if not found:
                missing.append(entity_id)
            elif record is not None:
                out[entity_id] = record
        if missing:
            generation = self._generation
            fetched = self.inner.get_many(kind, missing)
            for entity_id in missing:
                record = fetched.get(entity_id)
                self._keep(kind, entity_id, record, generation)
                if record is not None:
                    out[entity_id] = record
        return out

    def put(
        self, kind: MemoryKind, entity_id: str, text: str, *, expected_version: int, source: str
    ) -> MemoryRecord:
        """Write-through compare-and-set; a conflict evicts the cached record."""
        if self.before_write is not None:
            self.before_write()
        try:
            record = self.inner.put(
                kind, entity_id, text, expected_version=expected_version, source=source
            )
        except VersionConflict:
            with self._lock:
                self._records.pop((kind, entity_id), None)
            raise
        self._keep(kind, entity_id, record)
        return record

    def put_many(
        self,
        kind: MemoryKind,
        writes: Sequence[tuple[str, str, int]],
        *,
        source: str,
        vectors: Any = None,
    ) -> BatchPut:
        """Write-through batched compare-and-set; conflicting records are evicted."""
        if self.before_write is not None:
            self.before_write()
        out = self.inner.put_many(kind, writes, source=source, vectors=vectors)
        self._kept_one(kind, out)
        return out

    def put_batches(self, batches: Sequence[Batch], *, source: str) -> list[BatchPut | None]:
        """Write-through ``put_many`` of several kinds in order (see ``memories.put_batches``)."""
        if self.before_write is not None:
            self.before_write()
        try:
            outs = put_batches(self.inner, batches, source=source)
        except PartialPut as partial:
            self._kept(batches, partial.results)
            raise
        self._kept(batches, outs)
        return outs

    def _kept(self, batches: Sequence[Batch], outs: Sequence[BatchPut | None]) -> None:
        """Cache what a batched write wrote; forget the records it lost a race on."""
        for (kind, _, _), out in zip(batches, outs, strict=True):
            if out is not None:
                self._kept_one(kind, out)

    def _kept_one(self, kind: MemoryKind, out: BatchPut) -> None:
        self._written(kind, out.written.values())
        with self._lock:
            for entity_id in out.conflicts:
                self._records.pop((kind, entity_id), None)

    def _written(self, kind: str, records: Iterable[MemoryRecord]) -> None:
        """Cache records just written (never over a later version, as ``_keep``).

        Called by a merging store as soon as its commit is done (before the writers it merged
        hear of it), so a concurrent writer plans on the new version instead of losing a race.
        """
        for record in records:
            self._keep(kind, record.entity_id, record)

    def expect_writes(self, cause: str, kinds: Iterable[str]) -> AbstractContextManager[None]:
        """Pass through to a store that merges concurrent writes (else nothing to announce)."""
        expect = getattr(self.inner, "expect_writes", None)
        return expect(cause, kinds) if callable(expect) else nullcontext()

    def bulk_init(
        self,
        kind: MemoryKind,
        items: Iterable[tuple[str, str]],
        source: str,
        *,
        vectors: Any = None,
    ) -> int:
        """Pass through, then forget cached absences."""
        if self.before_write is not None:
            self.before_write()
        pairs = list(items)
        created = self.inner.bulk_init(kind, pairs, source, vectors=vectors)
        with self._lock:
            for entity_id, _ in pairs:
                self._records.pop((kind, entity_id), None)
        return created

    def delete(self, kind: MemoryKind, entity_id: str) -> None:
        """Delete in the store and the cache."""
        if self.before_write is not None:
            self.before_write()
        self.inner.delete(kind, entity_id)
        self._keep(kind, entity_id, None)

    def restore(self, records: Sequence[MemoryRecord]) -> int:
        """Pass through (recovery writes records with their versions), then forget them."""
        if self.before_write is not None:
            self.before_write()
        n: int = self.inner.restore(records)  # type: ignore[attr-defined]
        with self._lock:
            for rec in records:
                self._records.pop((rec.kind, rec.entity_id), None)
        return n

    def evict_older(self, kind: str, entity_id: str, version: int) -> bool:
        """Drop the cached record if it is older than ``version`` (or a cached absence).

        For a change feed (``services/memory_feed.py``): another process wrote ``version``.
        """
        with self._lock:
            hit = self._records.get((kind, entity_id))
            if hit is None or (hit[1] is not None and hit[1].version >= version):
                return False
            del self._records[(kind, entity_id)]
            return True

    def clear(self) -> None:
        """Forget every cached record (another process changed the store: a deletion)."""
        with self._lock:
            self._records.clear()
            self._generation += 1

    def ids(self, kind: MemoryKind) -> list[str]:
        """Pass through."""
        return self.inner.ids(kind)

    def count(self, kind: MemoryKind) -> int:
        """Pass through."""
        return self.inner.count(kind)

    def search(
        self, kind: MemoryKind, query: str, k: int, exclude: Sequence[str] = ()
    ) -> list[tuple[MemoryRecord, float]]:
        """Pass through (semantic search needs the store's index)."""
        return self.inner.search(kind, query, k, exclude)

    def embeddings(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, list[float]]:
        """Pass through."""
        return self.inner.embeddings(kind, entity_ids)
