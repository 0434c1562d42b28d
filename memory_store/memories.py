"""Memory store interface: user and item memories as versioned documents.

Every record has a stable id (``user:<id>`` / ``item:<id>``), a version that increases by one on
every write, an ``updated_at`` time and a ``source`` (what wrote it: ``warmup``, an interaction id,
``rollback:<version>``). Writes are compare-and-set on the version, so two concurrent propagations
can never silently overwrite each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

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


class BatchPut(BaseModel):
    """What a batched compare-and-set write did: the records written and the ids that conflicted."""

    written: dict[str, MemoryRecord] = Field(default_factory=dict, description="id -> record")
    conflicts: dict[str, int] = Field(
        default_factory=dict, description="id -> the version found instead of the expected one"
    )


def cas_record(
    out: BatchPut,
    kind: MemoryKind,
    entity_id: str,
    text: str,
    expected: int,
    found: int,
    now: float,
    source: str,
) -> MemoryRecord | None:
    """The record a compare-and-set write of a batch makes, or None with the conflict noted.

    A write whose expected version is not the one found, or a second write of one id in the
    batch, is a conflict in ``out``; the caller stores the record and notes it as written.
    """
    if found != expected or entity_id in out.written:
        out.conflicts[entity_id] = found
        return None
    return MemoryRecord(
        kind=kind, entity_id=entity_id, text=text, version=found + 1, updated_at=now, source=source
    )


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

    def put_many(
        self,
        kind: MemoryKind,
        writes: Sequence[tuple[str, str, int]],
        *,
        source: str,
        vectors: Any = None,
    ) -> BatchPut:
        """Compare-and-set many records of one kind at once: ``(id, text, expected_version)``.

        Every write whose expected version holds is applied (one store write for all of them);
        the others are reported as conflicts and change nothing. ``vectors`` (one row per write)
        are the texts' embeddings when the caller has them already.
        """
        ...

    def bulk_init(
        self,
        kind: MemoryKind,
        items: Iterable[tuple[str, str]],
        source: str,
        *,
        vectors: Any = None,
    ) -> int:
        """Create version-1 records for ids that do not exist yet; returns how many were created.

        Existing records are left untouched, so indexing twice is idempotent. ``vectors`` (one
        row per item, in order) are the texts' embeddings when the caller computed them already.
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


Batch = tuple[MemoryKind, Sequence[tuple[str, str, int]], Any]  # kind, writes, vectors (or None)


class PartialPut(Exception):  # noqa: N818 - a carrier, re-raised by the caller as ``error``
    """A ``put_batches`` whose kind failed: the outcomes of the kinds before it, and the error."""

    def __init__(self, results: list[BatchPut | None], error: BaseException) -> None:
        super().__init__(str(error))
        self.results = results  # one per batch given; None from the failed kind on
        self.error = error


def put_batches(
    store: MemoryStore, batches: Sequence[Batch], *, source: str
) -> list[BatchPut | None]:
    """``put_many`` of several kinds in the order given, in one store call when the store can.

    A kind is written only when the kinds before it were written in full (no conflict); else it
    comes back as None, not attempted. A store that merges concurrent writers (Chroma:
    ``put_batches``) writes them together with other callers' batches; any other store gets one
    ``put_many`` per kind, in order. A failing kind raises :class:`PartialPut` (what the kinds
    before it wrote must still be audited).
    """
    merged = getattr(store, "put_batches", None)
    if callable(merged):
        out: list[BatchPut | None] = merged(batches, source=source)
        return out
    results: list[BatchPut | None] = []
    for kind, writes, vectors in batches:
        if results and (results[-1] is None or results[-1].conflicts):
            results.append(None)
            continue
        try:
            put = store.put_many(kind, writes, source=source, vectors=vectors) if writes else None
        except Exception as err:
            raise PartialPut(results + [None] * (len(batches) - len(results)), err) from err
        results.append(put if put is not None else BatchPut())
    return results
