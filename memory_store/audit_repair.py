"""Writes found without their audit row: repaired before anything else touches the memory.

A write and its audit row are two steps; a job that dies between them leaves a store write no
audit row names. The next writer of that memory (or the job's own retry) audits it first, so the
retry sees it as applied. A concurrent writer of this process that is between the two steps is
repaired the same way, quietly: it is not a crash.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from memory_store.events import EventLog
from memory_store.memories import MemoryRecord

logger = logging.getLogger("memory_store.writes")

WARMUP_SOURCE = "warmup"  # the indexed version 1 of every memory: written before auditing began

# Causes of this process between their store write and its audit row: another writer of the
# same memory finds such a write unaudited, and its repair is then routine, not a crash's trace.
_in_flight: set[str] = set()
_in_flight_lock = threading.Lock()


@contextmanager
def writing(cause: str) -> Iterator[None]:
    """Mark ``cause`` as between its store write and its audit row, in this process."""
    with _in_flight_lock:
        fresh = cause not in _in_flight
        _in_flight.add(cause)
    try:
        yield
    finally:
        if fresh:
            with _in_flight_lock:
                _in_flight.discard(cause)


def is_caused(record: MemoryRecord) -> bool:
    """Whether a cause wrote this version (so it must be audited): all but the indexed warm-up."""
    return record.version > 1 or record.source != WARMUP_SOURCE


def repair_audit(log: EventLog, current: MemoryRecord) -> None:
    """Audit a write the store holds without its audit row (its job crashed between the two).

    Done before the memory is overwritten and when the writing cause retries: otherwise another
    cause's write would hide it, and the crashed cause's retry, finding no row of its own, would
    apply its patch a second time.
    """
    previous = log.version_text(current.kind, current.entity_id, current.version - 1)
    inserted = log.audit_write(
        current.kind,
        current.entity_id,
        current.version,
        previous,
        current.text,
        current.source,
        at=current.updated_at,
    )
    if not inserted:  # its own job audited it after the caller looked: nothing was missing
        logger.debug("%s: write by %s audited meanwhile", current.record_id, current.source)
        return
    with _in_flight_lock:
        in_flight = current.source in _in_flight
    logger.log(
        logging.DEBUG if in_flight else logging.WARNING,
        "%s: write by %s found without its audit row; audit repaired, not rewritten%s",
        current.record_id,
        current.source,
        " (that write is in flight in this process)" if in_flight else "",
    )
