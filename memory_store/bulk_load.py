"""The first memories of an index: each text embedded once, the store's add on a thread.

The index build has every memory text in hand (the item texts, the offline user summaries). Its
embeddings serve twice, as the store's vectors and as the vectors file curation reads
(``memory_store/vectors.py``), so they are computed once here when the store embeds with the
same local hashing; and the store's add (Chroma: native code, the GIL released) runs on a thread
while the build writes its candidate files and rules. The embedding itself (Python and numpy)
runs before the thread starts: two Python-bound threads would only take turns on the GIL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from memory_store.embeddings import HashingEmbedding
from memory_store.memories import MemoryKind, MemoryStore

logger = logging.getLogger(__name__)

CHUNK = 4096
Progress = Callable[[str, int, int], None]  # (step, done, total)


def shared_hashing(store: MemoryStore, mine: HashingEmbedding) -> bool:
    """Whether the store embeds exactly as the vectors file does (one embedding serves both)."""
    function = getattr(store, "embedding_function", None)
    return isinstance(function, HashingEmbedding) and function.get_config() == mine.get_config()


@dataclass
class BackgroundLoad:
    """Embeds and adds the memories of several kinds on a thread; ``join`` for the outcome."""

    store: MemoryStore
    work: list[tuple[MemoryKind, list[tuple[str, str]]]]  # kind -> (id, text) in vector order
    embedding: HashingEmbedding = field(default_factory=HashingEmbedding)
    progress: Progress | None = None
    source: str = "warmup"
    created: int = 0
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    _error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> BackgroundLoad:
        """Embed every text here, then add them on a thread; returns self."""
        for kind, pairs in self.work:
            texts = [text for _, text in pairs]
            self.vectors[kind] = (
                self.embedding.embed_texts(texts)
                if texts
                else np.zeros((0, self.embedding.dim), np.float32)
            )
        self._thread = threading.Thread(target=self._run, name="memrec-bulk-load", daemon=True)
        self._thread.start()
        return self

    def join(self) -> int:
        """Wait for the load; how many memories were created (its error, raised here)."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self.created

    def _run(self) -> None:
        try:
            self._load()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread by join
            self._error = err

    def _load(self) -> None:
        reuse = shared_hashing(self.store, self.embedding)
        total = sum(len(pairs) for _, pairs in self.work)
        done = 0
        for kind, pairs in self.work:
            vectors = self.vectors[kind]
            for start in range(0, len(pairs), CHUNK):
                chunk = pairs[start : start + CHUNK]
                rows = vectors[start : start + CHUNK] if reuse else None
                self.created += self.store.bulk_init(kind, chunk, self.source, vectors=rows)
                done += len(chunk)
                if self.progress is not None:
                    self.progress("memories", done, total)
        logger.info("loaded %d memories (%d new), embedded once", total, self.created)
