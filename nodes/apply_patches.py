"""The `apply_patches` node of the propagate graph: screen the model's output, then write it.

Every write goes through ``memory_store.batch_writes.apply_writes`` with the interaction id as its
cause: compare-and-set with retry, at most once per (cause, memory), audited, batched per kind
(one store read and one store write for the item memories, the same for the user memories, each
text embedded once). Item and neighbour writes come first and the user rewrite last, so "the user
memory carries this cause" means the whole propagation was applied (a replayed job then skips the
model call); a retried job re-applies the answer its first attempt kept, each write skipped when
it was made already. Under a ``user`` write scope (no collaborative write, isolated memory) only
the user rewrite is written.

ONE screen (``refusal``) guards every write: the user's rewrite, the item's update and each
neighbour patch. A text is refused when it
- reads like an instruction to a model (``INSTRUCTION_PATTERNS``), whatever the target;
- names the acting user or copies a run of MEMORY_COPY_RUN words of their own memory, unless it
  is written into that user's own memory;
- copies a run of COPY_RUN words of the catalogue text (description, reviews: where an injection
  hides) of the item or of an item neighbour, unless written into that item's own memory;
- copies a run of MEMORY_COPY_RUN words of another loaded user's memory (before its notes).
Runs never span a ref (``item:<id>``), a number or a catalogue name the target may use: the item's
title and attribute names anywhere, the titles of the user's own items in their own memory. A run
that two loaded sources share is common phrasing, not a copy, and what the target holds already is
no leak. So "enjoyed item:1203 (Top Hat (1935)), a light musical" passes, while a note repeating a
description or another user's profile sentence does not. A patch for a ref that was not loaded, a
malformed one (bad ref, empty, repeated) or an oversized one (> MAX_PATCH_CHARS) is dropped. A
refused rewrite keeps the memory's old text (the user's is written again under this cause, so
the propagation still completes once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langgraph.runtime import Runtime

from memory_store.batch_writes import PlannedWrite, apply_writes, expecting
from memory_store.claims import release_after_error, still_held
from memory_store.facet_cache import facet_cache_for
from memory_store.job_runner import release_model_slot
from memory_store.memories import MemoryKind
from memory_store.summaries import append_note, notes_of
from memory_store.workspace import Workspace, aworkspace_for
from nodes.patch_screen import screen_patches, screen_rewrite
from schemas.context import MemRecContext
from schemas.propagate_state import LoadedContext, MemoryWrite, PropagateState, PropagationReport
from schemas.records import CallUsage, PropagationResult

logger = logging.getLogger(__name__)


def merge_rewrite(rewrite: str, loaded_text: str) -> Any:
    """A new-text function for apply_write: the rewrite, plus notes added since it was loaded.

    The rewrite was computed from ``loaded_text``; when a concurrent propagation appended a note in
    between, that note is carried over instead of being lost.
    """
    before = set(notes_of(loaded_text))

    def compute(current: str) -> str:
        text = rewrite
        for note in notes_of(current):
            if note not in before and note not in text:
                text = append_note(text, note.removeprefix("Note:").strip())
        return text

    return compute


def apply_propagation(
    ws: Workspace, loaded: LoadedContext, result: PropagationResult, usage: CallUsage
) -> PropagationReport:
    """Write item, neighbour patches, then the user rewrite, each screened, once per cause."""
    event = loaded.event
    report = PropagationReport(interaction_id=event.interaction_id, usage=usage)
    if loaded.skip_reason:
        report.notes.append(loaded.skip_reason)
        return report
    if not still_held(ws.events, loaded.owner, event.interaction_id):
        report.notes.append("another executor took this job over (lease lapsed): nothing written")
        return report
    user_ref, item_ref = f"user:{event.user_id}", f"item:{event.item_id}"
    writes: list[PlannedWrite] = []
    if loaded.scope == "all":
        screened = screen_patches(loaded, result.neighbour_patches)
        report.dropped_patches = len(screened.dropped)
        report.refused_patches = len(screened.refused)
        report.notes.extend([*screened.dropped, *screened.refused])
        for reason in screened.refused:
            logger.warning("propagation %s: patch refused: %s", event.interaction_id, reason)
        old = loaded.inp.item_memory
        item_text, why = screen_rewrite(loaded, item_ref, old, result.item_memory)
        if not _refused(report, why):
            writes.append(PlannedWrite("item", event.item_id, merge_rewrite(item_text, old)))
        for patch in screened.accepted:
            kind, entity = patch.ref.split(":", 1)
            writes.append(PlannedWrite(_kind(kind), entity, _appender(patch.note)))
    else:
        report.notes.append("collaborative write is off: only the user's own memory is written")
    user_text, why = screen_rewrite(loaded, user_ref, loaded.inp.user_memory, result.user_memory)
    _refused(report, why)
    user_write = merge_rewrite(user_text, loaded.inp.user_memory)
    writes.append(PlannedWrite("user", event.user_id, user_write))
    _write_all(ws, report, writes)
    return report


def _refused(report: PropagationReport, why: str | None) -> bool:
    """Count and log a refused rewrite; whether it was refused."""
    if why is not None:
        report.refused_rewrites += 1
        report.notes.append(why)
        logger.warning("propagation %s: %s", report.interaction_id, why)
    return why is not None


def _appender(note: str) -> Any:
    return lambda current: append_note(current, note)


def _kind(kind: str) -> MemoryKind:
    return "user" if kind == "user" else "item"


def _write_all(ws: Workspace, report: PropagationReport, writes: list[PlannedWrite]) -> None:
    """Item memories first, then user memories (the acting user last), each kind batched."""
    ordered = sorted(writes, key=lambda w: w.kind != "item")  # stable: the user stays last
    written = apply_writes(
        ws.memories,
        ws.events,
        ordered,
        cause=report.interaction_id,
        embed=ws.embedder(),
        max_retries=8,
    )
    cache = facet_cache_for(ws)
    by_ref = {(w.kind, w.entity_id): out for w, out in zip(ordered, written, strict=True)}
    for w in writes:  # report in the model's order
        out = by_ref[(w.kind, w.entity_id)]
        if out is None:
            report.skipped += 1
            continue
        ws.on_memory_write(
            w.kind, w.entity_id, out.record.text, out.vector, version=out.record.version
        )
        cache.invalidate(w.kind, w.entity_id)
        report.writes.append(MemoryWrite(ref=f"{w.kind}:{w.entity_id}", version=out.record.version))


def _apply_and_settle(
    ws: Workspace, loaded: LoadedContext, result: PropagationResult, usage: CallUsage
) -> PropagationReport:
    """Write, then complete the job when this run holds it (hand it back if the writes fail)."""
    iid = loaded.event.interaction_id
    # Announced before screening, so a concurrent job's upsert waits for this one's writes and
    # both share it (memory_store/group_commit.py); apply_writes then names the exact kinds.
    kinds = [] if loaded.skip_reason else ["item", "user"] if loaded.scope == "all" else ["user"]
    try:
        with expecting(ws.memories, iid, kinds):
            report = apply_propagation(ws, loaded, result, usage)
    except Exception as err:
        release_after_error(ws.events, loaded.owner, loaded.own_claim, iid, err)
        raise
    if loaded.owner is not None:
        ws.events.complete_job(iid, loaded.owner)
    return report


async def apply_patches(state: PropagateState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: write the result and complete the interaction's job (when held)."""
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    loaded: LoadedContext = state["loaded"]
    result: PropagationResult | None = state.get("result")
    if result is None:  # skipped before the model call
        result = PropagationResult(user_memory="", item_memory="")
    usage = state.get("usage") or CallUsage()
    release_model_slot()  # the model call is over: the runner may start the next job's
    report = await asyncio.to_thread(_apply_and_settle, ws, loaded, result, usage)
    return {"report": report}
