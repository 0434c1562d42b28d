"""Opening a store's parts: Chroma, the event log, and snapshot files that may be damaged.

The backends are chosen by the environment: ``MEMREC_DATABASE_URL`` (Postgres event log, queue,
audit and record locks) and ``MEMREC_EMBEDDING``; the Chroma server URL comes from the caller.

Used by ``memory_store/workspace.open_workspace``: a file that is missing or cannot be read
becomes a :class:`~memory_store.manifest.DamagedStore` that names it and the repair command.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory_store.embedding_factory import make_embedding
from memory_store.events import EventLog, ReadOnlyLog
from memory_store.manifest import DamagedStore, repair_command
from memory_store.record_locks import FileRecordLocks
from memory_store.writer_lock import writer_lock

if TYPE_CHECKING:
    from memory_store.chroma_store import ChromaMemoryStore

# What a damaged snapshot file raises when it is read (numpy, scipy, pickle, zip).
_LOAD_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    AttributeError,
    ImportError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


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


def refuse_writes(directory: Path) -> Callable[[], None]:
    """A write hook that refuses every write (stores opened read-only)."""

    def refuse() -> None:
        raise ReadOnlyLog(f"{directory} was opened read-only; this command cannot write to it")

    return refuse


def load_or_damaged(path: Path, dataset: str, load: Callable[[], Any]) -> Any:
    """Run a loader; a missing or unreadable file becomes DamagedStore naming it."""
    from chromadb.errors import ChromaError

    try:
        return load()
    except FileNotFoundError as err:
        missing = Path(err.filename) if err.filename else path
        raise DamagedStore(missing, "missing", repair_command(dataset)) from err
    except (*_LOAD_ERRORS, ChromaError) as err:
        raise DamagedStore(path, f"cannot be read ({err})", repair_command(dataset)) from err


def open_events(
    directory: Path, dataset: str, readonly: bool, before_write: Callable[[], None] | None
) -> EventLog:
    """The store's event log, read-only or with the writer-lock hook.

    Postgres when ``MEMREC_DATABASE_URL`` is set (shared by every process and host on that
    database, ``memory_store/pg_events.py``: no writer lock, row locks instead), else the SQLite
    file under the store.
    """
    url = os.environ.get("MEMREC_DATABASE_URL")
    if url:
        from memory_store.pg_events import PgEventLog

        return PgEventLog(url, dataset, local_path=directory / "events.sqlite")  # type: ignore[return-value]
    path = directory / "events.sqlite"
    if readonly and not path.exists():  # a store indexed before the log existed: create it once
        EventLog(path, before_write=writer_lock(directory).acquire, dataset=dataset).close()
    return EventLog(path, readonly=readonly, before_write=before_write, dataset=dataset)
