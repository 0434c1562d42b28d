"""Memory store interface: user and item memories as versioned documents.

Every record has a stable id (``user:<id>`` / ``item:<id>``), a version that increases by one on
every write, an ``updated_at`` time and a ``source`` (what wrote it: ``warmup``, an interaction id,
``rollback:<version>``). Writes are compare-and-set on the version, so two concurrent propagations
can never silently overwrite each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

MemoryKind = Literal["user", "item"]


class VersionConflict(RuntimeError):
    """A compare-and-set write found another version than the one it expected."""

    def __init__(self, kind: str, entity_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"{kind} memory {entity_id!r}: expected version {expected}, found {actual}"
        )
        self.expected = expected
        self.actual = actual


class MemoryRecord(BaseModel):
    """One user or item memory as stored."""

    kind: MemoryKind = Field(description="user or item")
    entity_id: str = Field(description="the original user / item id")
    text: str = Field(description="the natural-language memory")
    version: int = Field(ge=1, description="1 for the first write, +1 per write")
    updated_at: float = Field(description="unix time of the last write")
    source: str = Field(description="what wrote this version: warmup, an interaction id, ...")

    @property
    def record_id(self) -> str:
        """Stable document id: ``<kind>:<entity_id>``."""
        return record_id(self.kind, self.entity_id)


def record_id(kind: str, entity_id: str) -> str:
    """Stable document id for a memory."""
    return f"{kind}:{entity_id}"


@runtime_checkable
class MemoryStore(Protocol):
    """What the graphs need from a memory store (Chroma in production, a dict in unit tests)."""

    def get(self, kind: MemoryKind, entity_id: str) -> MemoryRecord | None:
        """The current record, or None."""
        ...

    def get_many(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, MemoryRecord]:
        """Current records for the ids that exist (missing ids are absent from the result)."""
        ...

    def put(
        self,
        kind: MemoryKind,
        entity_id: str,
        text: str,
        *,
        expected_version: int,
        source: str,
    ) -> MemoryRecord:
        """Compare-and-set write: succeeds only if the current version is ``expected_version``.

        ``expected_version=0`` means the record must not exist yet. Raises VersionConflict.
        """
        ...

    def bulk_init(self, kind: MemoryKind, items: Iterable[tuple[str, str]], source: str) -> int:
        """Create version-1 records for ids that do not exist yet; returns how many were created.

        Existing records are left untouched, so indexing twice is idempotent.
        """
        ...

    def delete(self, kind: MemoryKind, entity_id: str) -> None:
        """Remove a memory (no error if absent)."""
        ...

    def ids(self, kind: MemoryKind) -> list[str]:
        """Every entity id of that kind."""
        ...

    def count(self, kind: MemoryKind) -> int:
        """How many memories of that kind exist."""
        ...

    def search(
        self, kind: MemoryKind, query: str, k: int, exclude: Sequence[str] = ()
    ) -> list[tuple[MemoryRecord, float]]:
        """Semantic search: the k most similar memories with a similarity in [-1, 1]."""
        ...

    def embeddings(self, kind: MemoryKind, entity_ids: Sequence[str]) -> dict[str, list[float]]:
        """The stored embedding vectors for the ids that exist."""
        ...
