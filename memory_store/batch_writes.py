"""Batched writes: all the memory writes of one cause, per kind, in as few store calls as can be.

``apply_writes`` is ``memory_store.writes.apply_write`` for every write of one cause (a
propagation): per memory kind one read of the current records, one batched compare-and-set and one
audit transaction, each text embedded once. The first round of every kind goes to the store in one
call (``memories.put_batches``), which a store that merges concurrent writers (Chroma: the group
commit) shares with other causes writing at the same time; a write that lost a race is retried,
batched, with its text recomputed on the record it lost to, and the kinds keep their order (a
kind is written only once the kinds before it are).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from memory_store.audit import AuditValues
from memory_store.audit_repair import is_caused, repair_audit, writing
from memory_store.events import EventLog
from memory_store.memories import (
    BatchPut,
    MemoryKind,
    MemoryRecord,
    MemoryStore,
    PartialPut,
    VersionConflict,
    put_batches,
)
from memory_store.writes import (
    NewText,
    UnknownMemory,
    WriteContention,
    apply_write,
    text_of,
)


@dataclass(frozen=True)
class PlannedWrite:
    """One write of a batch: the memory and its new text (or a function of the current one)."""

    kind: MemoryKind
    entity_id: str
    new_text: NewText


@dataclass(frozen=True)
class Written:
    """A write a batch made, with the text's embedding when the batch computed it."""

    record: MemoryRecord
    vector: Any = None


Embed = Callable[[list[str]], Any]  # texts -> one embedding row per text


def apply_writes(
    store: MemoryStore,
    log: EventLog,
    writes: Sequence[PlannedWrite],
    *,
    cause: str,
    embed: Embed | None = None,
    max_retries: int = 5,
) -> list[Written | None]:
    """``apply_write`` for every write of one cause, batched per kind in the order given.

    Kinds are written in the order they first appear, each kind with one batched
    compare-and-set. Returns, per write, what was written, or None when ``cause`` had written
    that memory already. ``embed`` embeds every new text once, for the store and the caller.
    Raises UnknownMemory (nothing written) or WriteContention like ``apply_write``.
    """
    with expecting(store, cause, [w.kind for w in writes]):
        return _apply_writes(store, log, writes, cause=cause, embed=embed, max_retries=max_retries)


def expecting(store: MemoryStore, cause: str, kinds: Sequence[str]) -> AbstractContextManager[Any]:
    """Announce a cause's coming batched writes to a store that merges concurrent ones.

    A store without ``expect_writes`` (the in-memory one, test wrappers) needs no announcement.
    """
    expect = getattr(store, "expect_writes", None)
    return expect(cause, kinds) if callable(expect) else nullcontext()


def _apply_writes(
    store: MemoryStore,
    log: EventLog,
    writes: Sequence[PlannedWrite],
    *,
    cause: str,
    embed: Embed | None,
    max_retries: int,
) -> list[Written | None]:
    done = log.applied_records(cause)
    out: list[Written | None] = [None] * len(writes)
    plans = []
    for kind in dict.fromkeys(w.kind for w in writes):
        todo = [
            n for n, w in enumerate(writes) if w.kind == kind and (kind, w.entity_id) not in done
        ]
        plans.append(_plan_kind(store, log, kind, writes, todo, cause))
    texts = [text for plan in plans for text in plan.texts]
    vectors = embed(texts) if embed is not None and texts else None
    rows: list[Any] = []
    offset = 0
    for plan in plans:
        rows.append(None if vectors is None else vectors[offset : offset + len(plan.texts)])
        offset += len(plan.texts)
    # The first round of every kind in one store call (merged with concurrent jobs' writes), up
    # to a kind with repeated writes: those go one at a time before any later kind is written.
    together = next((n + 1 for n, plan in enumerate(plans) if plan.later), len(plans))
    batches = [(plan.kind, _cas_rows(plan, writes), r) for plan, r in zip(plans, rows, strict=True)]
    with writing(cause):
        try:
            firsts = put_batches(store, batches[:together], source=cause)
        except PartialPut as partial:  # audit what the kinds before the failed one wrote
            for plan, r, first in zip(plans, rows, partial.results, strict=True):
                if first is not None:
                    _audit_round(log, plan.kind, plan.batch, plan.current, writes, first, r, cause)
            raise partial.error from None
        firsts += [None] * (len(plans) - len(firsts))
        for plan, r, first in zip(plans, rows, firsts, strict=True):
            for n, written in _commit_kind(store, log, plan, writes, r, cause, max_retries, first):
                out[n] = written
    return out


def _cas_rows(plan: _KindPlan, writes: Sequence[PlannedWrite]) -> list[tuple[str, str, int]]:
    """The plan's compare-and-set rows: ``(id, new text, expected version)``."""
    return [
        (writes[n].entity_id, text, plan.current[writes[n].entity_id].version)
        for n, text in zip(plan.batch, plan.texts, strict=True)
    ]


@dataclass
class _KindPlan:
    """One kind's batch: the current records, the writes to make and their new texts."""

    kind: MemoryKind
    current: dict[str, MemoryRecord]
    batch: list[int]  # write positions to make in the batched compare-and-set
    texts: list[str]  # their new texts
    later: list[int]  # second writes of a memory already in the batch: one at a time after


def _plan_kind(
    store: MemoryStore,
    log: EventLog,
    kind: MemoryKind,
    writes: Sequence[PlannedWrite],
    todo: list[int],
    cause: str,
) -> _KindPlan:
    """Read the kind's current records; compute the texts of the writes still to make."""
    first: dict[str, int] = {}
    for n in todo:
        first.setdefault(writes[n].entity_id, n)
    current = store.get_many(kind, list(first)) if first else {}
    missing = [entity_id for entity_id in first if entity_id not in current]
    if missing:
        raise UnknownMemory(kind, missing[0])
    caused = {e: r.version for e, r in current.items() if is_caused(r)}
    audited = log.audited_versions(kind, caused) if caused else set()
    batch = []
    for entity_id, n in first.items():
        record = current[entity_id]
        if entity_id in caused and entity_id not in audited:
            # A write whose audit row was lost (its job crashed in between): audit it before
            # anything else happens, so that job's retry sees it as applied.
            repair_audit(log, record)
        if record.source != cause:
            batch.append(n)
    texts = [text_of(writes[n].new_text, current[writes[n].entity_id].text) for n in batch]
    later = [n for n in todo if first[writes[n].entity_id] != n]
    return _KindPlan(kind, current, batch, texts, later)


def _commit_kind(
    store: MemoryStore,
    log: EventLog,
    plan: _KindPlan,
    writes: Sequence[PlannedWrite],
    vectors: Any,
    cause: str,
    max_retries: int,
    made: BatchPut | None = None,
) -> list[tuple[int, Written | None]]:
    """Batched compare-and-set and one audit per round; the losers of a round go again, batched.

    ``made``: the first round's outcome when the caller made it already (``put_batches``). A
    loser's text is recomputed on the record it lost to (no update lost), as in apply_write.
    """
    results: list[tuple[int, Written | None]] = []
    batch, texts, current = plan.batch, plan.texts, plan.current
    found: dict[str, int] = {}
    for attempt in range(max_retries + 1):
        if not batch:
            break
        put = made if made is not None and attempt == 0 else None
        if put is None:
            put = store.put_many(
                plan.kind,
                [
                    (writes[n].entity_id, text, current[writes[n].entity_id].version)
                    for n, text in zip(batch, texts, strict=True)
                ],
                source=cause,
                vectors=vectors,
            )
        results += _audit_round(log, plan.kind, batch, current, writes, put, vectors, cause)
        lost = [n for n in batch if writes[n].entity_id in put.conflicts]
        found = put.conflicts
        if lost and attempt < max_retries:
            time.sleep(min(0.1, 0.002 * 2**attempt) * random.uniform(0.5, 1.5))
        retry = _plan_kind(store, log, plan.kind, writes, lost, cause) if lost else None
        batch = retry.batch if retry else []
        texts = retry.texts if retry else []
        current = retry.current if retry else current
        vectors = None  # the store embeds recomputed texts itself
    if batch:
        first = writes[batch[0]].entity_id
        raise WriteContention(
            VersionConflict(plan.kind, first, current[first].version, found.get(first, -1)),
            plan.kind,
            first,
            max_retries + 1,
        )
    for n in plan.later:  # a second write of the same memory in one batch: after the first
        w = writes[n]
        record = apply_write(
            store, log, plan.kind, w.entity_id, w.new_text, cause=cause, max_retries=max_retries
        )
        results.append((n, None if record is None else Written(record)))
    return results


def _audit_round(
    log: EventLog,
    kind: MemoryKind,
    batch: list[int],
    current: dict[str, MemoryRecord],
    writes: Sequence[PlannedWrite],
    put: BatchPut,
    vectors: Any,
    cause: str,
) -> list[tuple[int, Written | None]]:
    """Audit one round's writes (one transaction); what each write position wrote."""
    rows: list[AuditValues] = []
    results: list[tuple[int, Written | None]] = []
    for row, n in enumerate(batch):
        record = put.written.get(writes[n].entity_id)
        if record is not None:
            previous = current[record.entity_id].text
            rows.append(
                (kind, record.entity_id, record.version, previous, record.text, cause,
                 record.updated_at)
            )  # fmt: skip
            results.append((n, Written(record, None if vectors is None else vectors[row])))
    log.audit_writes(rows)
    return results
