"""In-memory MemoryStore: dicts behind a lock, cosine search over the same embeddings as Chroma.

The reference implementation of the ``MemoryStore`` Protocol: unit tests use it, and evaluation
runs clone a seeded store with :meth:`InMemoryMemoryStore.copy` so no run sees another's writes.
"""

from __future__ import annotations

import copy as copy_module
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, get_args

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction

from memory_store.embeddings import HashingEmbedding, embed_documents, embed_query
from memory_store.memories import (
    BatchPut,
    MemoryKind,
    MemoryRecord,
    MemoryStore,
    VersionConflict,
    cas_record,
)

KINDS: tuple[str, ...] = get_args(MemoryKind)
_BATCH = 4096


def check_kind(kind: str) -> MemoryKind:
    """Return ``kind`` if it is a memory kind, else raise ValueError naming the accepted ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown memory kind {kind!r}; accepted: {', '.join(KINDS)}")
    return kind  # type: ignore[return-value]


class _Shelf:
    """The records and vectors of one kind, plus a lazily rebuilt matrix for search."""

    def __init__(self) -> None:
        self.records: dict[str, MemoryRecord] = {}
        self.vectors: dict[str, np.ndarray] = {}
        self._matrix: tuple[list[str], np.ndarray] | None = None

    def set(self, record: MemoryRecord, vector: np.ndarray | None = None) -> None:
        """Store a record; without a vector it is embedded lazily, when search needs it."""
        self.records[record.entity_id] = record
        if vector is None:
            self.vectors.pop(record.entity_id, None)
        else:
            self.vectors[record.entity_id] = vector
        self._matrix = None

    def fill_vectors(self, embed: Callable[[list[str]], list[np.ndarray]]) -> None:
        """Embed the records written without a vector (writes stay cheap; search pays once)."""
        missing = [i for i in self.records if i not in self.vectors]
        if missing:
            vectors = embed([self.records[i].text for i in missing])
            self.vectors.update(zip(missing, vectors, strict=True))
            self._matrix = None

    def remove(self, entity_id: str) -> None:
        self.records.pop(entity_id, None)
        self.vectors.pop(entity_id, None)
        self._matrix = None

    def matrix(self) -> tuple[list[str], np.ndarray]:
        """Ids and their unit-normalised vectors stacked (rebuilt after any write)."""
        if self._matrix is None:
            ids = list(self.vectors)
            if ids:
                stacked = np.stack([self.vectors[i] for i in ids]).astype(np.float32)
                norms = np.linalg.norm(stacked, axis=1, keepdims=True)
                stacked /= np.where(norms == 0.0, 1.0, norms)
            else:
                stacked = np.zeros((0, 0), dtype=np.float32)
            self._matrix = (ids, stacked)
        return self._matrix


class InMemoryMemoryStore:
    """Thread-safe dict-backed MemoryStore with compare-and-set writes and cosine search."""

    def __init__(self, embedding: EmbeddingFunction[Documents] | None = None) -> None:
        self.embedding_function: EmbeddingFunction[Documents] = embedding or HashingEmbedding()
        self._lock = threading.Lock()
        self._shelves: dict[str, _Shelf] = {kind: _Shelf() for kind in KINDS}

    def _embed(self, texts: list[str]) -> list[np.ndarray]:
        return list(embed_documents(self.embedding_function, texts))

    # -- construction -----------------------------------------------------------------------------

    def copy(self) -> InMemoryMemoryStore:
        """An independent deep copy (records and vectors); the embedding function is shared."""
        clone = InMemoryMemoryStore(self.embedding_function)
        with self._lock:
            clone._shelves = copy_module.deepcopy(self._shelves)
        return clone

    @classmethod
    def from_store(
        cls, other: MemoryStore, embedding: EmbeddingFunction[Documents] | None = None
    ) -> InMemoryMemoryStore:
        """Copy every record of ``other`` (versions, times and sources kept), re-embedding texts.

        Without ``embedding``, the other store's ``embedding_function`` is reused when it has one,
        so search behaves the same in the copy.
        """
        store = cls(embedding or getattr(other, "embedding_function", None))
        for kind in KINDS:
            ids = other.ids(kind)  # type: ignore[arg-type]
            for start in range(0, len(ids), _BATCH):
                records = other.get_many(kind, ids[start : start + _BATCH])  # type: ignore[arg-type]
                store._restore(list(records.values()))
        return store

    def _restore(self, records: list[MemoryRecord]) -> None:
        """Insert records as they are (no version bump)."""
        if not records:
            return
        with self._lock:
            for record in records:
                self._shelves[record.kind].set(record.model_copy())

    # -- reads ------------------------------------------------------------------------------------

    def get(self, kind: MemoryKind, entity_id: str) -> MemoryRecord | None:
        """The current record, or None."""
        shelf = self._shelves[check_kind(kind)]
        with self._lock:
            record = shelf.records.get(entity_id)
            return record.model_copy() if record else None

    def get_many(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, MemoryRecord]:
        """Current records for the ids that exist (missing ids are absent from the result)."""
        shelf = self._shelves[check_kind(kind)]
        with self._lock:
            return {
                i: shelf.records[i].model_copy()
                for i in dict.fromkeys(entity_ids)
                if i in shelf.records
            }

    def ids(self, kind: MemoryKind) -> list[str]:
        """Every entity id of that kind, in insertion order."""
        shelf = self._shelves[check_kind(kind)]
        with self._lock:
            return list(shelf.records)

    def count(self, kind: MemoryKind) -> int:
        """How many memories of that kind exist."""
        shelf = self._shelves[check_kind(kind)]
        with self._lock:
            return len(shelf.records)

    def embeddings(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored embedding vectors for the ids that exist."""
        shelf = self._shelves[check_kind(kind)]
        with self._lock:
            shelf.fill_vectors(self._embed)
            return {
                i: shelf.vectors[i].tolist()
                for i in dict.fromkeys(entity_ids)
                if i in shelf.vectors
            }

    def search(
        self, kind: MemoryKind, query: str, k: int, exclude: Sequence[str] = ()
    ) -> list[tuple[MemoryRecord, float]]:
        """The k memories with the highest cosine similarity to ``query`` (ties by id)."""
        shelf = self._shelves[check_kind(kind)]
        if k <= 0:
            return []
        vector = embed_query(self.embedding_function, query)
        norm = float(np.linalg.norm(vector))
        with self._lock:
            shelf.fill_vectors(self._embed)
            ids, matrix = shelf.matrix()
            if not ids:
                return []
            scores = matrix @ (vector / norm if norm else vector)
            excluded = set(exclude)
            order = sorted(
                (i for i in range(len(ids)) if ids[i] not in excluded),
                key=lambda i: (-scores[i], ids[i]),
            )[:k]
            return [(shelf.records[ids[i]].model_copy(), float(scores[i])) for i in order]

    # -- writes -----------------------------------------------------------------------------------

    def put(
        self,
        kind: MemoryKind,
        entity_id: str,
        text: str,
        *,
        expected_version: int,
        source: str,
    ) -> MemoryRecord:
        """Compare-and-set write; ``expected_version=0`` means the record must not exist yet."""
        shelf = self._shelves[check_kind(kind)]
        with self._lock:
            current = shelf.records.get(entity_id)
            actual = current.version if current else 0
            if actual != expected_version:
                raise VersionConflict(kind, entity_id, expected_version, actual)
            record = MemoryRecord(
                kind=kind,
                entity_id=entity_id,
                text=text,
                version=actual + 1,
                updated_at=time.time(),
                source=source,
            )
            shelf.set(record)
            return record.model_copy()

    def put_many(
        self,
        kind: MemoryKind,
        writes: Sequence[tuple[str, str, int]],
        *,
        source: str,
        vectors: Any = None,
    ) -> BatchPut:
        """Batched compare-and-set (see the MemoryStore protocol)."""
        shelf = self._shelves[check_kind(kind)]
        out = BatchPut()
        now = time.time()
        with self._lock:
            for n, (entity_id, text, expected) in enumerate(writes):
                current = shelf.records.get(entity_id)
                actual = current.version if current else 0
                record = cas_record(out, kind, entity_id, text, expected, actual, now, source)
                if record is None:
                    continue
                shelf.set(record, None if vectors is None else np.asarray(vectors[n]))
                out.written[entity_id] = record.model_copy()
        return out

    def bulk_init(
        self,
        kind: MemoryKind,
        items: Iterable[tuple[str, str]],
        source: str,
        *,
        progress: Callable[[int], None] | None = None,
        vectors: Any = None,
    ) -> int:
        """Create version-1 records for ids not present yet; returns how many were created.

        ``progress`` is called after each batch with the number of input items it handled.
        A repeated id within ``items`` keeps its first text. ``vectors``: one embedding row per
        item, already computed.
        """
        shelf = self._shelves[check_kind(kind)]
        created = 0
        batch: list[tuple[int, str, str]] = []
        for row, (entity_id, text) in enumerate(items):
            batch.append((row, entity_id, text))
            if len(batch) == _BATCH:
                created += self._init_batch(shelf, kind, batch, source, progress, vectors)
                batch = []
        if batch:
            created += self._init_batch(shelf, kind, batch, source, progress, vectors)
        return created

    def _init_batch(
        self,
        shelf: _Shelf,
        kind: MemoryKind,
        batch: list[tuple[int, str, str]],
        source: str,
        progress: Callable[[int], None] | None,
        given: Any,
    ) -> int:
        fresh: dict[str, str] = {}
        rows: list[int] = []
        with self._lock:
            for row, entity_id, text in batch:
                if entity_id not in fresh and entity_id not in shelf.records:
                    fresh[entity_id] = text
                    rows.append(row)
        if given is None:
            vectors = embed_documents(self.embedding_function, list(fresh.values()))
        else:
            vectors = np.asarray(given, dtype=np.float32)[rows]
        now = time.time()
        created = 0
        with self._lock:
            for (entity_id, text), vector in zip(fresh.items(), vectors, strict=True):
                if entity_id in shelf.records:  # created by a concurrent put meanwhile
                    continue
                record = MemoryRecord(
                    kind=kind,
                    entity_id=entity_id,
                    text=text,
                    version=1,
                    updated_at=now,
                    source=source,
                )
                shelf.set(record, vector)
                created += 1
        if progress is not None:
            progress(len(batch))
        return created

    def delete(self, kind: MemoryKind, entity_id: str) -> None:
        """Remove a memory (no error if absent)."""
        shelf = self._shelves[check_kind(kind)]
        with self._lock:
            shelf.remove(entity_id)

    def restore(self, records: Sequence[MemoryRecord]) -> int:
        """Write records as they are, versions included (recovery from the audit log)."""
        for record in records:
            check_kind(record.kind)
        self._restore(list(records))  # embedded lazily, when search needs the vectors
        return len(records)
