"""Chroma-backed MemoryStore: user and item memories as embedded records.

Two collections, ``<prefix>_user_memories`` and ``<prefix>_item_memories`` (cosine space), hold one
record per entity: id = entity id, the embedding of the memory text, metadata = ``entity_id``,
``version``, ``updated_at``, ``source`` and ``text`` (the memory text: kept out of Chroma's
full-text-indexed documents, ``chroma_client.TEXT_KEY``). The embedding function is always set
explicitly (the local :class:`~memory_store.embeddings.HashingEmbedding` by default) because
Chroma's own default downloads a model; telemetry is off.

Clients: an embedded ``PersistentClient(path)`` by default, ``HttpClient`` against a Chroma server
when ``url`` is given, an in-process ``EphemeralClient`` when neither is.

Consistency: ``put`` / ``put_many`` are compare-and-set on the version under a lock per database
around the read-check-write, atomic within one process, which the embedded default needs (one
writer process, whose versions are kept in process: ``chroma_versions.py``). Chroma has no
transactions, so when several processes write to one Chroma server the read-check-write must also
hold a lock they share: ``record_lock`` (kind, ids) -> context manager, set by whoever opens the
store for such a deployment (``record_locks.py``: row locks in Postgres, or a lock file).
``put_many`` writes a batch with one upsert (merged with concurrent ones: ``group_commit.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, cast

import numpy as np
from chromadb.api.collection_configuration import CreateCollectionConfiguration
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Documents, EmbeddingFunction

from memory_store.chroma_client import (
    HNSW_SETTINGS,
    cas_upsert,
    chunks,
    client_for,
    metadata_for,
    now_ms,
    record_from_row,
    tuned,
)
from memory_store.chroma_compact import compact, recover_collections, reopening
from memory_store.chroma_versions import SharedWriter, writer_for, written_by
from memory_store.embeddings import HashingEmbedding, embed_documents
from memory_store.group_commit import GroupCommit, WriteRequest, per_batch
from memory_store.inmemory_store import KINDS, check_kind
from memory_store.memories import (
    Batch,
    BatchPut,
    MemoryKind,
    MemoryRecord,
    PartialPut,
    VersionConflict,
)
from memory_store.writer_lock import writer_lock

logger = logging.getLogger(__name__)

_DEFAULT_BATCH = 4096
_PAGE = 10_000


class ChromaMemoryStore:
    """MemoryStore on Chroma collections with compare-and-set writes (see the module docstring)."""

    def __init__(
        self,
        path: Path | None = None,
        url: str | None = None,
        embedding: EmbeddingFunction[Documents] | None = None,
        prefix: str = "memrec",
    ) -> None:
        self.embedding_function: EmbeddingFunction[Documents] = embedding or HashingEmbedding()
        self.path = Path(path) if path is not None else None
        self.prefix = prefix
        self._client = client_for(path, url)
        # embedded: the database's lock and kept versions, shared in process (chroma_versions)
        self._writer = writer_for(self.path) if self.path is not None else SharedWriter()
        self._lock = self._writer.lock
        self._writer_lock = writer_lock(self.path.parent) if self.path is not None else None
        self.on_written: Callable[[str, list[MemoryRecord]], None] | None = None  # after commits
        self._tuned: set[str] = set()  # kinds whose write settings this process checked
        self._group = GroupCommit(self._commit)
        # a lock shared with other writer processes around each read-check-write (see above)
        self.record_lock: Callable[[str, Sequence[str]], AbstractContextManager[Any]] = (
            lambda kind, ids: nullcontext()
        )
        try:
            recover_collections(self._client, prefix)
            self._batch = self._max_batch_size()
            self._collections: dict[str, Collection] = {
                kind: self._open_collection(f"{prefix}_{kind}_memories") for kind in KINDS
            }
        except Exception:
            self.close()  # do not leak an open embedded database on a refused configuration
            raise
        logger.info(
            "chroma memory store at %s (prefix %s, batch %d)",
            url or path or "memory",
            prefix,
            self._batch,
        )

    def _max_batch_size(self) -> int:
        """The client's largest add/get batch; a conservative default if it does not say."""
        size = int(self._client.get_max_batch_size())
        return min(size, _DEFAULT_BATCH) if size > 0 else _DEFAULT_BATCH

    def _open_collection(self, name: str) -> Collection:
        """Get or create a cosine collection and refuse one built with another embedding config."""
        function = self.embedding_function
        collection = self._client.get_or_create_collection(
            name,
            configuration=cast(CreateCollectionConfiguration, {"hnsw": dict(HNSW_SETTINGS)}),
            embedding_function=cast(Any, function),  # chroma types it for images too
        )
        persisted = (collection.configuration_json or {}).get("embedding_function") or {}
        if persisted.get("type") == "known" and persisted.get("config") != function.get_config():
            raise ValueError(
                f"collection {name!r} was built with embedding {persisted.get('name')} "
                f"{persisted.get('config')}, but {function.name()} {function.get_config()} was "
                "given; open it with the same embedding or use another prefix"
            )
        return collection

    def _collection(self, kind: str) -> Collection:
        return self._collections[check_kind(kind)]

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the client (for an embedded store: the SQLite files and index)."""
        close = getattr(self._client, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> ChromaMemoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reads ------------------------------------------------------------------------------------

    def get(self, kind: MemoryKind, entity_id: str) -> MemoryRecord | None:
        """The current record, or None."""
        return self.get_many(kind, [entity_id]).get(entity_id)

    @reopening
    def get_many(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, MemoryRecord]:
        """Current records for the ids that exist (one Chroma call per max-batch of ids)."""
        collection = self._collection(kind)
        records: dict[str, MemoryRecord] = {}
        for chunk in chunks(list(dict.fromkeys(entity_ids)), self._batch):
            got = collection.get(ids=chunk, include=["documents", "metadatas"])
            for i, doc, meta in zip(
                got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True
            ):
                records[i] = record_from_row(kind, i, doc, meta)
        return records

    @reopening
    def ids(self, kind: MemoryKind) -> list[str]:
        """Every entity id of that kind."""
        collection = self._collection(kind)
        ids: list[str] = []
        while True:
            page = collection.get(include=[], limit=_PAGE, offset=len(ids))["ids"]
            ids.extend(page)
            if len(page) < _PAGE:
                return ids

    @reopening
    def count(self, kind: MemoryKind) -> int:
        """How many memories of that kind exist."""
        return self._collection(kind).count()

    @reopening
    def embeddings(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored embedding vectors for the ids that exist."""
        collection = self._collection(kind)
        vectors: dict[str, list[float]] = {}
        for chunk in chunks(list(dict.fromkeys(entity_ids)), self._batch):
            got = collection.get(ids=chunk, include=["embeddings"])
            stored = got["embeddings"] if got["embeddings"] is not None else []
            for i, vector in zip(got["ids"], stored, strict=True):
                vectors[i] = np.asarray(vector, dtype=np.float32).tolist()
        return vectors

    @reopening
    def search(
        self, kind: MemoryKind, query: str, k: int, exclude: Sequence[str] = ()
    ) -> list[tuple[MemoryRecord, float]]:
        """The k most similar memories (similarity = 1 - cosine distance), skipping ``exclude``."""
        collection = self._collection(kind)
        total = collection.count()
        if k <= 0 or total == 0:
            return []
        excluded = set(exclude)
        got = collection.query(
            query_texts=[query],
            n_results=min(total, k + len(excluded)),
            include=["documents", "metadatas", "distances"],
        )
        rows = zip(
            got["ids"][0],
            (got["documents"] or [[]])[0],
            (got["metadatas"] or [[]])[0],
            (got["distances"] or [[]])[0],
            strict=True,
        )
        hits = [
            (record_from_row(kind, i, doc, meta), float(np.clip(1.0 - dist, -1.0, 1.0)))
            for i, doc, meta, dist in rows
            if i not in excluded
        ]
        return hits[:k]

    # -- writes -----------------------------------------------------------------------------------

    @reopening
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
        out = self.put_many(kind, [(entity_id, text, expected_version)], source=source)
        if entity_id in out.conflicts:
            raise VersionConflict(kind, entity_id, expected_version, out.conflicts[entity_id])
        return out.written[entity_id]

    def put_many(
        self,
        kind: MemoryKind,
        writes: Sequence[tuple[str, str, int]],
        *,
        source: str,
        vectors: Any = None,
    ) -> BatchPut:
        """Batched compare-and-set: one read of the versions, one upsert of every write that holds.

        Concurrent calls are merged into one read and one upsert (``memory_store/group_commit``).
        A repeated id is written once (the first); the repeats come back as conflicts.
        """
        out = self.put_batches([(kind, writes, vectors)], source=source)[0]
        assert out is not None  # a single kind is always attempted
        return out

    def put_batches(self, batches: Sequence[Batch], *, source: str) -> list[BatchPut | None]:
        """``put_many`` of several kinds, in order (see ``memories.put_batches``): one upsert each.

        Merged with concurrent calls (``memory_store/group_commit``); a kind that failed raises
        ``PartialPut`` (the kinds before it being written).
        """
        parts = []
        for kind, writes, vectors in batches:
            check_kind(kind)
            if not writes:
                continue
            if vectors is None:  # outside any lock: the embedding may be remote
                vectors = embed_documents(self.embedding_function, [text for _, text, _ in writes])
            parts.append((kind, WriteRequest(list(writes), source, vectors)))
        try:
            return per_batch(batches, self._group.submit(parts) if parts else [])
        except PartialPut as partial:
            raise PartialPut(per_batch(batches, partial.results), partial.error) from partial.error

    def expect_writes(self, cause: str, kinds: Iterable[str]) -> AbstractContextManager[None]:
        """Announce ``cause``'s coming ``put_many`` of ``kinds``, so a concurrent one waits for it.

        See ``memory_store/group_commit.py``: writers that announce themselves share one upsert.
        """
        return self._group.expect(cause, [check_kind(kind) for kind in kinds])

    def _commit(self, kind: str, requests: list[WriteRequest]) -> None:
        """One read of the versions and one upsert for a group of requests (in their order)."""
        ids = list(dict.fromkeys(w[0] for req in requests for w in req.writes))
        with self._lock, self.record_lock(kind, ids):
            collection = self._writable(kind)
            try:
                known = self._writer.kept(kind, collection, self._writer_lock)
                cas_upsert(collection, cast(MemoryKind, kind), ids, requests, known)
            except BaseException:
                self._writer.forget(kind)  # what the failed call left is unknown
                raise
            if self.on_written is not None:
                self.on_written(kind, [r for q in requests for r in written_by(q)])

    def _writable(self, kind: str) -> Collection:
        """The kind's collection with the write settings (set by this process's first commit)."""
        if kind not in self._tuned:
            found, function = self._collections[kind], self.embedding_function
            self._collections[kind] = tuned(self._client, found, function)
            self._tuned.add(kind)
        return self._collections[kind]

    @reopening
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

        Works in batches of the client's max batch size; ``progress`` is called after each batch
        with the number of input items it handled. A repeated id keeps its first text.
        ``vectors`` (one row per item, in order): the texts' embeddings, already computed.
        """
        collection = self._collection(kind)
        created = 0
        batch: list[tuple[int, str, str]] = []
        for row, (entity_id, text) in enumerate(items):
            batch.append((row, entity_id, text))
            if len(batch) == self._batch:
                created += self._init_batch(collection, batch, source, vectors)
                if progress is not None:
                    progress(len(batch))
                batch = []
        if batch:
            created += self._init_batch(collection, batch, source, vectors)
            if progress is not None:
                progress(len(batch))
        return created

    def _init_batch(
        self, collection: Collection, batch: list[tuple[int, str, str]], source: str, vectors: Any
    ) -> int:
        """Add the batch's ids that do not exist yet (checked again under the lock)."""
        fresh: dict[str, tuple[int, str]] = {}
        for row, entity_id, text in batch:
            fresh.setdefault(entity_id, (row, text))
        for entity_id in collection.get(ids=list(fresh), include=[])["ids"]:
            fresh.pop(entity_id, None)
        if not fresh:
            return 0
        ids = list(fresh)
        if vectors is None:
            embedded = embed_documents(self.embedding_function, [t for _, t in fresh.values()])
        else:
            embedded = np.asarray(vectors, dtype=np.float32)[[r for r, _ in fresh.values()]]
        now = now_ms()
        with self._lock:
            raced = set(collection.get(ids=ids, include=[])["ids"])
            keep = [n for n, i in enumerate(ids) if i not in raced]
            if not keep:
                return 0
            collection.add(
                ids=[ids[n] for n in keep],
                embeddings=embedded[keep],
                metadatas=[metadata_for(ids[n], 1, now, source, fresh[ids[n]][1]) for n in keep],
            )
        return len(keep)

    @reopening
    def delete(self, kind: MemoryKind, entity_id: str) -> None:
        """Remove a memory (no error if absent)."""
        collection = self._collection(kind)
        with self._writer.changing(kind):
            collection.delete(ids=[entity_id])

    def compact(self, kinds: Sequence[str] = KINDS) -> dict[str, int]:
        """Rewrite collections with only their current records and vacuum (privacy deletion)."""
        return compact(self, tuple(kinds))

    @reopening
    def restore(self, records: Sequence[MemoryRecord]) -> int:
        """Upsert records exactly as given, versions included (recovery from the audit log)."""
        for kind in KINDS:
            mine = [r for r in records if r.kind == kind]
            collection = self._collection(kind)
            for start in range(0, len(mine), self._batch):
                chunk = mine[start : start + self._batch]
                vectors = embed_documents(self.embedding_function, [r.text for r in chunk])
                with self._writer.changing(kind):
                    collection.upsert(
                        ids=[r.entity_id for r in chunk],
                        embeddings=vectors,
                        metadatas=[
                            metadata_for(r.entity_id, r.version, r.updated_at, r.source, r.text)
                            for r in chunk
                        ],
                    )
        return len(records)
