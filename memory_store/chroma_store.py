"""Chroma-backed MemoryStore: user and item memories as embedded documents.

Two collections, ``<prefix>_user_memories`` and ``<prefix>_item_memories`` (cosine space), hold one
document per entity: id = entity id, document = memory text, metadata = ``entity_id``, ``version``,
``updated_at``, ``source``. The embedding function is always set explicitly (the local
:class:`~memory_store.embeddings.HashingEmbedding` by default) because Chroma's own default
downloads a model; telemetry is off.

Clients: an embedded ``PersistentClient(path)`` by default, ``HttpClient`` against a Chroma server
when ``url`` is given, an in-process ``EphemeralClient`` when neither is.

Consistency: ``put`` is compare-and-set on the version under a per-store lock around the
read-check-write, so it is atomic within one process, which is what the embedded default needs (one
writer: the propagation worker). Chroma has no transactions, so with several processes writing to
one Chroma server the check is best-effort: two processes can both pass the check before either
writes. Run a single writer per server (or route writes through one worker) when that matters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.collection_configuration import CreateCollectionConfiguration
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Documents, EmbeddingFunction
from chromadb.config import Settings

from memory_store.chroma_compact import compact, recover_collections, reopening
from memory_store.embeddings import HashingEmbedding, embed_documents
from memory_store.inmemory_store import KINDS, check_kind
from memory_store.memories import MemoryKind, MemoryRecord, VersionConflict

logger = logging.getLogger(__name__)

_DEFAULT_BATCH = 4096
_PAGE = 10_000
# HNSW settings of new collections. A narrower construction beam (40, Chroma's default is 100)
# cuts bulk indexing time by about a quarter; a wider search beam (200) wins the recall back
# (recall@10 0.94 vs 0.95 on amazon-games titles) for ~1 ms more per query.
HNSW_SETTINGS: dict[str, Any] = {
    "space": "cosine",
    "ef_construction": 40,
    "ef_search": 200,
    "max_neighbors": 16,
}


def _client_for(path: Path | None, url: str | None) -> ClientAPI:
    """Build the Chroma client: HTTP when ``url`` is given, else persistent or ephemeral."""
    settings = Settings(anonymized_telemetry=False)
    if url is not None and path is not None:
        raise ValueError("ChromaMemoryStore takes either path (embedded) or url (server), not both")
    if url is None:
        if path is None:
            return chromadb.EphemeralClient(settings=settings)
        Path(path).mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=settings)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Chroma url {url!r} is not valid; expected http(s)://host[:port]")
    ssl = parts.scheme == "https"
    port = parts.port or (443 if ssl else 8000)
    return chromadb.HttpClient(host=parts.hostname, port=port, ssl=ssl, settings=settings)


def _record(kind: MemoryKind, entity_id: str, document: str | None, meta: Any) -> MemoryRecord:
    """A MemoryRecord from one Chroma row."""
    return MemoryRecord(
        kind=kind,
        entity_id=str(meta.get("entity_id", entity_id)),
        text=document or "",
        version=int(meta["version"]),
        updated_at=float(meta["updated_at"]),
        source=str(meta["source"]),
    )


def _now() -> float:
    """Write time in milliseconds (Chroma keeps ~16 significant digits; finer reads back off)."""
    return round(time.time(), 3)


def _metadata(entity_id: str, version: int, updated_at: float, source: str) -> dict[str, Any]:
    return {"entity_id": entity_id, "version": version, "updated_at": updated_at, "source": source}


def _chunks(values: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


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
        self._client = _client_for(path, url)
        self._lock = threading.Lock()
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
        for chunk in _chunks(list(dict.fromkeys(entity_ids)), self._batch):
            got = collection.get(ids=chunk, include=["documents", "metadatas"])
            for i, doc, meta in zip(
                got["ids"], got["documents"] or [], got["metadatas"] or [], strict=True
            ):
                records[i] = _record(kind, i, doc, meta)
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
        for chunk in _chunks(list(dict.fromkeys(entity_ids)), self._batch):
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
            (_record(kind, i, doc, meta), float(np.clip(1.0 - dist, -1.0, 1.0)))
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
        collection = self._collection(kind)
        vector = embed_documents(self.embedding_function, [text])  # outside the lock: may be remote
        with self._lock:
            got = collection.get(ids=[entity_id], include=["metadatas"])
            metas = got["metadatas"] or []
            actual = int(cast(int, metas[0]["version"])) if got["ids"] else 0
            if actual != expected_version:
                raise VersionConflict(kind, entity_id, expected_version, actual)
            record = MemoryRecord(
                kind=kind,
                entity_id=entity_id,
                text=text,
                version=actual + 1,
                updated_at=_now(),
                source=source,
            )
            collection.upsert(
                ids=[entity_id],
                embeddings=vector,
                documents=[text],
                metadatas=[_metadata(entity_id, record.version, record.updated_at, source)],
            )
        return record

    @reopening
    def bulk_init(
        self,
        kind: MemoryKind,
        items: Iterable[tuple[str, str]],
        source: str,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Create version-1 records for ids not present yet; returns how many were created.

        Works in batches of the client's max batch size; ``progress`` is called after each batch
        with the number of input items it handled. A repeated id keeps its first text.
        """
        collection = self._collection(kind)
        created = 0
        batch: list[tuple[str, str]] = []
        for item in items:
            batch.append(item)
            if len(batch) == self._batch:
                created += self._init_batch(collection, batch, source)
                if progress is not None:
                    progress(len(batch))
                batch = []
        if batch:
            created += self._init_batch(collection, batch, source)
            if progress is not None:
                progress(len(batch))
        return created

    def _init_batch(self, collection: Collection, batch: list[tuple[str, str]], source: str) -> int:
        """Add the batch's ids that do not exist yet (checked again under the lock)."""
        fresh: dict[str, str] = {}
        for entity_id, text in batch:
            fresh.setdefault(entity_id, text)
        for entity_id in collection.get(ids=list(fresh), include=[])["ids"]:
            fresh.pop(entity_id, None)
        if not fresh:
            return 0
        ids = list(fresh)
        vectors = embed_documents(self.embedding_function, list(fresh.values()))
        now = _now()
        with self._lock:
            raced = set(collection.get(ids=ids, include=[])["ids"])
            keep = [n for n, i in enumerate(ids) if i not in raced]
            if not keep:
                return 0
            collection.add(
                ids=[ids[n] for n in keep],
                embeddings=vectors[keep],
                documents=[fresh[ids[n]] for n in keep],
                metadatas=[_metadata(ids[n], 1, now, source) for n in keep],
            )
        return len(keep)

    @reopening
    def delete(self, kind: MemoryKind, entity_id: str) -> None:
        """Remove a memory (no error if absent)."""
        collection = self._collection(kind)
        with self._lock:
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
                with self._lock:
                    collection.upsert(
                        ids=[r.entity_id for r in chunk],
                        embeddings=vectors,
                        documents=[r.text for r in chunk],
                        metadatas=[
                            _metadata(r.entity_id, r.version, r.updated_at, r.source) for r in chunk
                        ],
                    )
        return len(records)
