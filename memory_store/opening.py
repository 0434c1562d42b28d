"""Opening a store's parts: Chroma, the event log, and snapshot files that may be damaged.

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


def open_chroma(directory: Path, chroma_url: str | None) -> ChromaMemoryStore:
    """The store's Chroma: a server when a URL is configured, else embedded under the store."""
    from memory_store.chroma_store import ChromaMemoryStore

    # MEMREC_EMBEDDING: "hash" (local, the default) or "openai:<model>" /
    # "openai-compatible:<model>@<url>"; fixed per store (Chroma keeps it with the collection).
    embedding = make_embedding(os.environ.get("MEMREC_EMBEDDING", "hash"))
    if chroma_url:
        return ChromaMemoryStore(url=chroma_url, embedding=embedding)
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
    """The store's event log, read-only or with the writer-lock hook."""
    path = directory / "events.sqlite"
    if readonly and not path.exists():  # a store indexed before the log existed: create it once
        EventLog(path, before_write=writer_lock(directory).acquire, dataset=dataset).close()
    return EventLog(path, readonly=readonly, before_write=before_write, dataset=dataset)
