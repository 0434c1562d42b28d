"""Compaction of an embedded Chroma store, so deleted memories leave no trace on disk.

Deleting a record in Chroma keeps its earlier texts in places a user cannot see but a disk can:
the write-ahead log (``embeddings_queue``, purged only when the vector index is persisted), the
full-text index segments, and SQLite's free pages. :func:`compact` rewrites the given collections
with only their current records (into a new collection that then takes the old name, so a crash at
any point leaves one complete collection: see :func:`recover_collections`), merges the full-text
index, vacuums the database, removes the folders of vector segments that no longer exist and
zeroes the unused capacity of the persisted vector indexes (``zero_unused_vector_slots``).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from chromadb.errors import ChromaError, NotFoundError

from memory_store.chroma_client import TEXT_KEY
from memory_store.inmemory_store import KINDS

logger = logging.getLogger(__name__)

SUFFIX = "__compacting"
_PAGE = 2000
F = TypeVar("F", bound=Callable[..., Any])


def reopening(method: F) -> F:
    """Retry a store method once after re-fetching collections another client compacted.

    A compaction replaces each collection by a new one with the same name; a client that holds
    the old one (another workspace, another process reading the store) finds it gone.
    """

    @functools.wraps(method)
    def wrapper(store: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(store, *args, **kwargs)
        except NotFoundError:
            reopen_collections(store)
            return method(store, *args, **kwargs)
        except ChromaError as err:
            if store.path is None:  # a Chroma server: its own errors
                raise
            raise _damaged(Path(store.path), err) from err

    return cast(F, wrapper)


def _damaged(chroma: Path, err: Exception) -> Exception:
    """An embedded Chroma database that fails a read or write: name it and the repair."""
    from memory_store.manifest import DamagedStore, repair_command

    store = chroma.parent
    return DamagedStore(
        chroma / "chroma.sqlite3",
        f"the memory database failed ({type(err).__name__}: {str(err)[:200]})",
        f"{repair_command(store.name)} (for the dataset stored in {store})",
    )


def reopen_collections(store: Any) -> None:
    """Fetch a store's collections again by name (their records' versions are read again)."""
    store._writer.forget()
    for kind, old in list(store._collections.items()):
        store._collections[kind] = store._client.get_collection(
            old.name, embedding_function=cast(Any, store.embedding_function)
        )


def compact(store: Any, kinds: tuple[str, ...] = KINDS) -> dict[str, int]:
    """Rewrite a ChromaMemoryStore's collections of ``kinds`` with their current records.

    Then, for an embedded store, vacuum the database and drop dead segment folders. Returns the
    records kept per kind.
    """
    counts = {kind: _rewrite(store, kind) for kind in kinds}
    if store.path is not None:
        vacuum(store.path / "chroma.sqlite3")
        remove_orphan_segments(store.path)
        zero_unused_vector_slots(store.path)
    return counts


def _rewrite(store: Any, kind: str) -> int:
    client = store._client
    old = store._collections[kind]
    name = old.name
    with store._lock:
        got: dict[str, list[Any]] = {"ids": [], "documents": [], "metadatas": [], "embeddings": []}
        while True:
            include: Any = ["documents", "metadatas", "embeddings"]
            page = old.get(include=include, limit=_PAGE, offset=len(got["ids"]))
            for key in got:
                got[key].extend(cast(list[Any], page[key]) if page[key] is not None else [])
            if len(page["ids"]) < _PAGE:
                break
        _drop(client, name + SUFFIX)
        fresh = store._open_collection(name + SUFFIX)
        # the text lives in the metadata (``chroma_client.TEXT_KEY``); rows of an older store
        # that kept it as the document are moved over, so the copy needs no documents
        docs = got["documents"] or [None] * len(got["ids"])
        for meta, doc in zip(got["metadatas"], docs, strict=True):
            if TEXT_KEY not in meta:
                meta[TEXT_KEY] = doc or ""
        for start in range(0, len(got["ids"]), store._batch):
            end = start + store._batch
            fresh.add(
                ids=got["ids"][start:end],
                metadatas=got["metadatas"][start:end],
                embeddings=got["embeddings"][start:end],
            )
        client.delete_collection(name)
        fresh.modify(name=name)
        store._writer.forget(kind)
        store._collections[kind] = client.get_collection(
            name, embedding_function=cast(Any, store.embedding_function)
        )
    logger.info("compacted %s: %d records", name, len(got["ids"]))
    return len(got["ids"])


def _drop(client: Any, name: str) -> None:
    try:
        client.delete_collection(name)
    except Exception as err:  # noqa: BLE001 - chroma raises several types for "no such collection"
        if "does not exist" not in str(err).lower() and "not found" not in str(err).lower():
            raise


def recover_collections(client: Any, prefix: str) -> None:
    """Finish or undo a compaction a crash interrupted (run when a store opens)."""
    names = {c.name for c in client.list_collections()}
    for kind in KINDS:
        name = f"{prefix}_{kind}_memories"
        if name + SUFFIX not in names:
            continue
        if name in names:  # the copy was not finished: the original is intact
            client.delete_collection(name + SUFFIX)
        else:  # the original was dropped after the copy completed: the copy takes its name
            client.get_collection(name + SUFFIX).modify(name=name)
        logger.warning("recovered an interrupted compaction of %s", name)


def vacuum(database: Path, attempts: int = 20) -> None:
    """Merge the full-text index and rewrite the database file without free pages."""
    for attempt in range(attempts):
        conn = sqlite3.connect(database, timeout=10.0, isolation_level=None)
        try:
            conn.execute(
                "INSERT INTO embedding_fulltext_search(embedding_fulltext_search) "
                "VALUES('optimize')"
            )
            conn.execute("VACUUM")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) and "busy" not in str(err):
                raise
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))
        finally:
            conn.close()


def remove_orphan_segments(chroma_dir: Path) -> int:
    """Delete vector segment folders no collection uses any more; returns how many."""
    conn = sqlite3.connect(f"file:{chroma_dir / 'chroma.sqlite3'}?mode=ro", uri=True, timeout=10.0)
    try:
        live = {row[0] for row in conn.execute("SELECT id FROM segments")}
    finally:
        conn.close()
    removed = 0
    for folder in chroma_dir.iterdir():
        if folder.is_dir() and folder.name not in live and _looks_like_segment(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def zero_unused_vector_slots(chroma_dir: Path) -> int:
    """Zero the unused capacity of each persisted HNSW index; how many files were rewritten.

    hnswlib allocates its element array uninitialised and writes all of it, so the slots beyond
    the element count hold whatever the writing process's heap held before (a deleted user's
    texts included). The header (format 1: int32 version, then offset, max elements, element
    count, bytes per element as uint64) says where the used part ends; an unknown format is left
    alone. Only the file changes: a process that holds the index in memory may write such bytes
    again when it next persists it.
    """
    fixed = 0
    for header in chroma_dir.glob("*/header.bin"):
        data_file = header.with_name("data_level0.bin")
        raw = header.read_bytes()
        if len(raw) < 36 or not data_file.exists():
            continue
        version = struct.unpack_from("<i", raw, 0)[0]
        _, capacity, count, per_element = struct.unpack_from("<QQQQ", raw, 4)
        size = data_file.stat().st_size
        if version != 1 or per_element == 0 or size != capacity * per_element or count > capacity:
            logger.info("%s: unknown HNSW layout, left as is", header.parent.name)
            continue
        used = count * per_element
        with open(data_file, "r+b") as fh:
            fh.seek(used)
            fh.write(b"\0" * (size - used))
            fh.flush()
            os.fsync(fh.fileno())
        fixed += 1
    return fixed


def _looks_like_segment(name: str) -> bool:
    parts = name.split("-")
    return len(parts) == 5 and all(c in "0123456789abcdef-" for c in name)
