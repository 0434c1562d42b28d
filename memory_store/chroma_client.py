"""Chroma plumbing shared by the memory store: the client for a location and row conversions."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.config import Settings

from memory_store.group_commit import WriteRequest
from memory_store.memories import BatchPut, MemoryKind, MemoryRecord, cas_record

logger = logging.getLogger(__name__)

# HNSW settings of new collections. A narrower construction beam (40, Chroma's default is 100)
# cuts bulk indexing time by about a quarter; a wider search beam (200) wins the recall back
# (recall@10 0.94 vs 0.95 on amazon-games titles) for ~1 ms more per query.
HNSW_SETTINGS: dict[str, Any] = {
    "space": "cosine",
    "ef_construction": 40,
    "ef_search": 200,
    "max_neighbors": 16,
    "sync_threshold": 100,
}
# Chroma persists a vector index every ``sync_threshold`` writes and only then purges its
# write-ahead log; until then each write costs more the longer the log is. At Chroma's default
# (1000) an 8-record upsert on the ml-100k store took 12 ms after a persist and 21-26 ms before the
# next; at 100 it stays at 10-12 ms, also on the 58 MB amazon-games item index (its persists
# included); bulk adds take as long (one persist per add call). A store built before gets it at
# its first compare-and-set write (``tuned``; a reader never writes the database).
TUNABLE_HNSW = ("sync_threshold",)


# The memory text lives in the metadata, not in Chroma's ``documents``: documents are full-text
# indexed (an FTS5 index nothing here searches: search is by embedding), which costs about a third
# of the CPU of a bulk add. Stores written before keep their documents and are read as before.
TEXT_KEY = "text"


def client_for(path: Path | None, url: str | None) -> ClientAPI:
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


def record_from_row(
    kind: MemoryKind, entity_id: str, document: str | None, meta: Any
) -> MemoryRecord:
    """A MemoryRecord from one Chroma row: the text from its metadata, else its document."""
    text = meta.get(TEXT_KEY)
    return MemoryRecord(
        kind=kind,
        entity_id=str(meta.get("entity_id", entity_id)),
        text=str(text) if text is not None else document or "",
        version=int(meta["version"]),
        updated_at=float(meta["updated_at"]),
        source=str(meta["source"]),
    )


def now_ms() -> float:
    """Write time in milliseconds (Chroma keeps ~16 significant digits; finer reads back off)."""
    return round(time.time(), 3)


def metadata_for(
    entity_id: str, version: int, updated_at: float, source: str, text: str
) -> dict[str, Any]:
    """The metadata of one memory row, its text included (see ``TEXT_KEY``)."""
    return {
        "entity_id": entity_id,
        "version": version,
        "updated_at": updated_at,
        "source": source,
        TEXT_KEY: text,
    }


def chunks(values: Sequence[str], size: int) -> Iterator[list[str]]:
    """``values`` in lists of at most ``size``."""
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


VERSION_PAGE = 2000  # records per read of every version: ~50 ms of GIL-held Chroma call


def read_versions(collection: Any, ids: list[str] | None = None) -> dict[str, int]:
    """The versions of ``ids`` that exist, or of every record.

    Every record is read in pages: the GIL is free between them (Chroma's calls hold it).
    """
    if ids is not None:
        got = collection.get(ids=ids, include=["metadatas"])
        metas = got["metadatas"] or []
        return {i: int(meta["version"]) for i, meta in zip(got["ids"], metas, strict=True)}
    versions: dict[str, int] = {}
    while True:
        page = collection.get(include=["metadatas"], limit=VERSION_PAGE, offset=len(versions))
        metas = page["metadatas"] or []
        rows = zip(page["ids"], metas, strict=True)
        versions.update((i, int(meta["version"])) for i, meta in rows)
        if len(page["ids"]) < VERSION_PAGE:
            return versions


def cas_upsert(
    collection: Any,
    kind: MemoryKind,
    ids: list[str],
    requests: list[WriteRequest],
    known: dict[str, int] | None = None,
) -> None:
    """Compare-and-set a group of requests (in their order) with one read and one upsert.

    The caller holds the store's locks. Fills each request's result: a write whose expected
    version is not the current one (or a second write of one id in a request) is a conflict.
    ``known``: current versions kept by the store's only writer (``chroma_versions``): ids found
    there are not read back, and what is read or written goes in. The caller drops it when this
    raises (the store's state is then unknown).
    """
    version = {} if known is None else {i: known[i] for i in ids if i in known}
    missing = [i for i in ids if i not in version]
    if missing:
        read = read_versions(collection, missing)
        version.update(read)
        if known is not None:
            known.update(read)
    now = now_ms()
    rows: list[tuple[MemoryRecord, Any]] = []
    for req in requests:
        req.result = BatchPut()
        for n, (entity_id, text, expected) in enumerate(req.writes):
            found = version.get(entity_id, 0)
            record = cas_record(req.result, kind, entity_id, text, expected, found, now, req.source)
            if record is None:
                continue
            version[entity_id] = record.version
            req.result.written[entity_id] = record
            rows.append((record, req.vectors[n]))
    if rows:
        collection.upsert(
            ids=[r.entity_id for r, _ in rows],
            embeddings=np.asarray([v for _, v in rows], dtype=np.float32),
            metadatas=[
                metadata_for(r.entity_id, r.version, r.updated_at, r.source, r.text)
                for r, _ in rows
            ],
        )
        if known is not None:
            known.update((r.entity_id, r.version) for r, _ in rows)


def tuned(client: ClientAPI, collection: Any, embedding_function: Any) -> Any:
    """The collection with this version's write settings (``TUNABLE_HNSW``), set if they differ.

    Only speed depends on them: a store whose settings cannot be changed is used as it is.
    """
    hnsw = (collection.configuration_json or {}).get("hnsw") or {}
    change = {k: HNSW_SETTINGS[k] for k in TUNABLE_HNSW if hnsw.get(k) != HNSW_SETTINGS[k]}
    if not change:
        return collection
    try:
        collection.modify(configuration={"hnsw": change})
        return client.get_collection(collection.name, embedding_function=embedding_function)
    except Exception as err:  # noqa: BLE001 - a speed setting: keep the collection as it is
        logger.warning(
            "could not set %s on %s (%s); writes may be slower", change, collection.name, err
        )
        return collection
