"""Embeddings of every user and item memory, kept in numpy beside the store for cheap features.

Curation's ``memory_sim`` feature reads them; every memory write refreshes its row
(``Workspace.on_memory_write``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np

from dataio.files import atomic_write_with
from memory_store.embeddings import HashingEmbedding
from memory_store.memories import MemoryKind


@dataclass
class MemoryVectors:
    """Embeddings of every user and item memory, kept in numpy for cheap curation features."""

    users: np.ndarray
    items: np.ndarray
    embedding: HashingEmbedding = field(default_factory=HashingEmbedding)
    # the memory version each row was last refreshed to, in this process
    _versions: dict[tuple[str, int], int] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # row norms per kind, with the array they were computed on (see ``norms``)
    _norms: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def refresh(
        self,
        kind: MemoryKind,
        code: int,
        text: str,
        vector: np.ndarray | None = None,
        *,
        version: int | None = None,
    ) -> bool:
        """Re-embed one memory after a write (``vector``: its embedding, already computed).

        With ``version``, a refresh older than the row's last one is ignored: two writers of one
        memory may report their writes in the other order than they were made, and the row must
        end as the embedding of the newest text. Returns whether the row was refreshed.
        """
        row = self.embedding.embed_texts([text])[0] if vector is None else vector
        with self._lock:
            key = (kind, code)
            if version is not None:
                if version < self._versions.get(key, 0):
                    return False
                self._versions[key] = version
            target = self.users if kind == "user" else self.items
            target[code] = row
            self._set_norm(kind, target, code)
        return True

    def clear(self, kind: MemoryKind, code: int) -> None:
        """Zero one row (a deleted user's): no similarity to anyone."""
        with self._lock:
            target = self.users if kind == "user" else self.items
            target[code] = 0.0
            self._set_norm(kind, target, code)

    def norms(self, kind: MemoryKind) -> np.ndarray:
        """The L2 norm of every row, kept in step by ``refresh`` and ``clear`` (do not write).

        Rows written another way are not tracked; an array replaced as a whole is recomputed.
        """
        target = self.users if kind == "user" else self.items
        with self._lock:
            cached = self._norms.get(kind)
            if cached is None or cached[0] is not target:
                cached = self._norms[kind] = (target, np.linalg.norm(target, axis=1))
            return cached[1]

    def _set_norm(self, kind: str, target: np.ndarray, code: int) -> None:
        cached = self._norms.get(kind)
        if cached is not None and cached[0] is target:  # in place, as the row itself
            cached[1][code] = np.linalg.norm(target[code : code + 1], axis=1)[0]

    def save(self, directory: Path) -> list[Path]:
        """Write both arrays, each atomically; returns the files."""
        paths = [directory / "vectors_users.npy", directory / "vectors_items.npy"]
        for path, array in zip(paths, (self.users, self.items), strict=True):
            atomic_write_with(path, partial(_save_npy, array=array))
        return paths

    @classmethod
    def load(cls, directory: Path) -> MemoryVectors:
        """Read arrays written by ``save``."""
        return cls(
            np.load(directory / "vectors_users.npy"), np.load(directory / "vectors_items.npy")
        )


def _save_npy(fh: IO[bytes], array: np.ndarray) -> None:
    np.save(fh, array)
