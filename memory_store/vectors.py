"""Embeddings of every user and item memory, kept in numpy beside the store for cheap features.

Curation's ``memory_sim`` feature reads them; every memory write refreshes its row
(``Workspace.on_memory_write``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from memory_store.embeddings import HashingEmbedding
from memory_store.memories import MemoryKind


@dataclass
class MemoryVectors:
    """Embeddings of every user and item memory, kept in numpy for cheap curation features."""

    users: np.ndarray
    items: np.ndarray
    embedding: HashingEmbedding = field(default_factory=HashingEmbedding)

    def refresh(
        self, kind: MemoryKind, code: int, text: str, vector: np.ndarray | None = None
    ) -> None:
        """Re-embed one memory after a write (``vector``: its embedding, already computed)."""
        target = self.users if kind == "user" else self.items
        target[code] = self.embedding.embed_texts([text])[0] if vector is None else vector

    def save(self, directory: Path) -> None:
        """Write both arrays."""
        np.save(directory / "vectors_users.npy", self.users)
        np.save(directory / "vectors_items.npy", self.items)

    @classmethod
    def load(cls, directory: Path) -> MemoryVectors:
        """Read arrays written by ``save``."""
        return cls(
            np.load(directory / "vectors_users.npy"), np.load(directory / "vectors_items.npy")
        )
