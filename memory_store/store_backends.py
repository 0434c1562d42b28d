"""Where a store's parts live: the event log (SQLite or Postgres), record locks, Chroma.

The backends a workspace opens, chosen by the environment: ``MEMREC_DATABASE_URL`` (Postgres event
log, queue, audit and record locks) and ``MEMREC_EMBEDDING``; the Chroma server URL comes from the
caller. ``memory_store/workspace.py`` opens a store through these.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory_store.embedding_factory import make_embedding
from memory_store.events import EventLog
from memory_store.record_locks import FileRecordLocks

if TYPE_CHECKING:
    from memory_store.chroma_store import ChromaMemoryStore


def open_event_log(directory: Path, dataset: str) -> EventLog:
    """The store's event log: Postgres when ``MEMREC_DATABASE_URL`` is set, else its SQLite file.

    Shared by every process (and host) on that database; ``memory_store/pg_events.py``.
    """
    url = os.environ.get("MEMREC_DATABASE_URL")
    if not url:
        return EventLog(directory / "events.sqlite")
    from memory_store.pg_events import PgEventLog

    return PgEventLog(url, dataset, local_path=directory / "events.sqlite")  # type: ignore[return-value]


def record_locks_for(directory: Path, dataset: str) -> Callable[..., Any]:
    """The cross-process record locks of a store written by several processes."""
    url = os.environ.get("MEMREC_DATABASE_URL")
    if url:
        from memory_store.pg_events import PgRecordLocks

        return PgRecordLocks(url, dataset)
    return FileRecordLocks(directory / "record.locks")


def open_chroma(directory: Path, chroma_url: str | None) -> ChromaMemoryStore:
    """The store's Chroma: a server when a URL is configured, else embedded under the store."""
    from memory_store.chroma_store import ChromaMemoryStore

    # MEMREC_EMBEDDING: "hash" (local, the default) or "openai:<model>" /
    # "openai-compatible:<model>@<url>"; fixed per store (Chroma keeps it with the collection).
    embedding = make_embedding(os.environ.get("MEMREC_EMBEDDING", "hash"))
    if chroma_url:  # several processes may write: their compare-and-set shares a lock
        store = ChromaMemoryStore(url=chroma_url, embedding=embedding)
        store.record_lock = record_locks_for(directory, directory.name)
        return store
    return ChromaMemoryStore(path=directory / "chroma", embedding=embedding)
