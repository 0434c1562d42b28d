"""Rebuilding memories from the audit log, which holds the text of every audited version.

A lost or damaged Chroma store is rebuilt as the index built it (the warm-up texts), then every
memory the audit log knows is put back at its latest audited version, with that version number,
so later writes continue the history instead of colliding with it. Stores that can do this have a
``restore(records)`` method (Chroma, in-memory, the read cache); it is not part of the
``MemoryStore`` protocol, which only the graphs' needs define.
"""

from __future__ import annotations

import logging

from memory_store.audit import AuditLog
from memory_store.memories import MemoryRecord, MemoryStore

logger = logging.getLogger(__name__)

_BATCH = 2000


def audited_records(log: AuditLog) -> list[MemoryRecord]:
    """The latest audited version of every memory, as records."""
    return [
        MemoryRecord(
            kind="user" if row.kind == "user" else "item",
            entity_id=row.entity_id,
            text=row.new_text,
            version=row.version,
            updated_at=row.at,
            source=row.cause,
        )
        for row in log.latest_versions()
    ]


def restore_from_audit(store: MemoryStore, log: AuditLog, *, only_behind: bool = True) -> int:
    """Put back every memory that is missing or behind its latest audited version; how many.

    With ``only_behind=False`` every audited memory is rewritten (a rebuild from scratch).
    """
    records = audited_records(log)
    todo = []
    for kind in ("user", "item"):
        mine = [r for r in records if r.kind == kind]
        for start in range(0, len(mine), _BATCH):
            chunk = mine[start : start + _BATCH]
            current = store.get_many(kind, [r.entity_id for r in chunk])
            for rec in chunk:
                have = current.get(rec.entity_id)
                if not only_behind or have is None or have.version < rec.version:
                    todo.append(rec)
    restore = getattr(store, "restore", None)  # Chroma, in-memory and cached stores have it
    if todo and not callable(restore):
        raise TypeError(f"{type(store).__name__} cannot restore records (no restore method)")
    for start in range(0, len(todo), _BATCH):
        restore(todo[start : start + _BATCH])  # type: ignore[misc]
    if todo:
        logger.warning("restored %d memories from the audit log", len(todo))
    return len(todo)
