"""Audited, versioned, idempotent memory writes on top of a compare-and-set MemoryStore.

``apply_write`` is the only way propagation changes a memory: it retries a compare-and-set on
VersionConflict (recomputing the text when it is a function of the current one, so no update is
lost), writes at most once per cause, and audits every write in the event log. ``rollback``
restores a past version as a new version, so history is never rewritten.

``memory_store/batch_writes.apply_writes`` does the same for all the writes of one cause at once
(a propagation), batched per kind and shared with concurrent causes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from memory_store.audit_repair import is_caused, repair_audit, writing
from memory_store.events import EventLog
from memory_store.memories import (
    MemoryKind,
    MemoryRecord,
    MemoryStore,
    VersionConflict,
)

logger = logging.getLogger(__name__)

NewText = str | Callable[[str], str]


class UnknownMemory(KeyError):
    """The memory to write does not exist and creation was not requested."""

    def __init__(self, kind: str, entity_id: str) -> None:
        super().__init__(kind, entity_id)
        self.kind = kind
        self.entity_id = entity_id

    def __str__(self) -> str:
        return (
            f"no {self.kind} memory {self.entity_id!r}; index it first (bulk_init) or pass "
            "create=True to create it"
        )


class UnknownVersion(LookupError):
    """A rollback asked for a version the audit log does not know."""


class WriteContention(VersionConflict):
    """Compare-and-set kept losing to concurrent writers until the retries ran out."""

    def __init__(self, last: VersionConflict, kind: str, entity_id: str, attempts: int) -> None:
        super().__init__(kind, entity_id, last.expected, last.actual)
        self.args = (f"gave up after {attempts} compare-and-set attempts: {last}",)


def apply_write(
    store: MemoryStore,
    log: EventLog,
    kind: MemoryKind,
    entity_id: str,
    new_text: NewText,
    *,
    cause: str,
    max_retries: int = 5,
    create: bool = False,
    backoff_s: float = 0.002,
) -> MemoryRecord | None:
    """Write a memory once per ``cause``, compare-and-set with retries, and audit it.

    ``new_text`` is the text, or a function of the current text (``""`` when creating) that is
    re-evaluated after every conflict. Returns the written record, or None when ``cause`` had
    already written this memory (a replayed job). Raises UnknownMemory when the memory is absent
    and ``create`` is False, WriteContention when every retry lost a race.
    """
    if log.applied(cause, kind, entity_id):
        logger.debug("%s:%s already written by %s; skipped", kind, entity_id, cause)
        return None
    return _cas_loop(
        store,
        log,
        kind,
        entity_id,
        new_text,
        cause=cause,
        max_retries=max_retries,
        create=create,
        backoff_s=backoff_s,
        idempotent=True,
    )


def text_of(new_text: NewText, current: str) -> str:
    """The text to write: ``new_text`` itself, or its value on the ``current`` text."""
    return new_text(current) if callable(new_text) else new_text


def rollback(
    store: MemoryStore,
    log: EventLog,
    kind: MemoryKind,
    entity_id: str,
    version: int,
    *,
    max_retries: int = 5,
) -> MemoryRecord:
    """Restore the text of ``version`` as a new version (cause ``rollback:<version>``).

    Not idempotent on purpose: rolling back to the same version twice, with writes in between,
    must write twice. Raises UnknownVersion (listing the known ones) or UnknownMemory.
    """
    text = _text_at(store, log, kind, entity_id, version)
    record = _cas_loop(
        store,
        log,
        kind,
        entity_id,
        text,
        cause=f"rollback:{version}",
        max_retries=max_retries,
        create=False,
        backoff_s=0.002,
        idempotent=False,
    )
    if record is None:  # only idempotent writes skip; kept for the type checker
        raise RuntimeError(f"rollback of {kind}:{entity_id} to version {version} wrote nothing")
    return record


def _text_at(
    store: MemoryStore, log: EventLog, kind: MemoryKind, entity_id: str, version: int
) -> str:
    text = log.version_text(kind, entity_id, version)
    if text is not None:
        return text
    current = store.get(kind, entity_id)
    if current is None:
        raise UnknownMemory(kind, entity_id)
    if current.version == version:
        return current.text
    # A version written before auditing began (the indexed warm-up) survives as the previous
    # text of the next audited version.
    successor = next((r for r in log.history(kind, entity_id) if r.version == version + 1), None)
    if successor is not None and successor.previous_text is not None:
        return successor.previous_text
    known = sorted({row.version for row in log.history(kind, entity_id)} | {current.version})
    raise UnknownVersion(
        f"{kind} memory {entity_id!r} has no recorded version {version}; "
        f"known versions: {', '.join(map(str, known))}"
    )


def _cas_loop(
    store: MemoryStore,
    log: EventLog,
    kind: MemoryKind,
    entity_id: str,
    new_text: NewText,
    *,
    cause: str,
    max_retries: int,
    create: bool,
    backoff_s: float,
    idempotent: bool,
) -> MemoryRecord | None:
    """Read, compute, compare-and-set, audit; on conflict back off and start over."""
    if max_retries < 0:
        raise ValueError(f"apply_write: max_retries must be >= 0, got {max_retries}")
    last: VersionConflict | None = None
    for attempt in range(max_retries + 1):
        current = store.get(kind, entity_id)
        if current is None and not create:
            raise UnknownMemory(kind, entity_id)
        if (
            current is not None
            and is_caused(current)
            and log.version_text(kind, entity_id, current.version) is None
        ):
            repair_audit(log, current)  # its job crashed before auditing: see repair_audit
        if idempotent and current is not None and current.source == cause:
            return None
        previous = current.text if current is not None else ""
        text = new_text(previous) if callable(new_text) else new_text
        expected = current.version if current is not None else 0
        with writing(cause):
            try:
                record = store.put(kind, entity_id, text, expected_version=expected, source=cause)
            except VersionConflict as conflict:
                last = conflict
                if attempt < max_retries:
                    time.sleep(min(0.1, backoff_s * 2**attempt) * random.uniform(0.5, 1.5))
                continue
            log.audit_write(
                kind,
                entity_id,
                record.version,
                current.text if current is not None else None,
                record.text,
                cause,
                at=record.updated_at,
            )
        return record
    assert last is not None  # the loop ran at least once and every attempt conflicted
    raise WriteContention(last, kind, entity_id, max_retries + 1)
