"""The `apply_patches` node of the propagate graph: screen the model's output, then write it.

Every write goes through ``memory_store.writes.apply_write`` with the interaction id as its cause:
compare-and-set with retry, at most once per (cause, memory), audited. Item and neighbour writes
come first and the user rewrite last, so "the user memory carries this cause" means the whole
propagation was applied (a replayed job then skips the model call).

Screening: a patch for a ref that was not loaded, a malformed one (bad ref, empty, repeated) or an
oversized one (> MAX_PATCH_CHARS) is dropped; a patch into another user's memory that carries the
acting user's id or a run of >= COPY_RUN words of the acting user's memory is refused.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from graph.context import MemRecContext, aworkspace_for
from memory_store.facet_cache import facet_cache_for
from memory_store.memories import MemoryKind
from memory_store.summaries import append_note, notes_of
from memory_store.workspace import Workspace
from memory_store.writes import apply_write
from nodes.load_context import LoadedContext
from nodes.roles import CallUsage, NeighbourPatch, PropagationResult

logger = logging.getLogger(__name__)

MAX_PATCH_CHARS = 600
COPY_RUN = 6  # consecutive words copied from the acting user's memory that count as identifying
_WORD = re.compile(r"[a-z0-9']+")
_REF = re.compile(r"^(user|item):(\S.*)$")

if TYPE_CHECKING:  # the graph module imports this node; LangGraph reads the graph state
    from graph.propagate import PropagateState


class MemoryWrite(BaseModel):
    """One memory a propagation wrote."""

    ref: str = Field(description="'user:<id>' or 'item:<id>'")
    version: int = Field(description="the version the write created")


class PropagationReport(BaseModel):
    """What one propagation did."""

    interaction_id: str = Field(description="the propagated interaction (the cause of writes)")
    writes: list[MemoryWrite] = Field(default_factory=list, description="memories written")
    skipped: int = Field(
        default=0, description="writes skipped because this cause already made them"
    )
    dropped_patches: int = Field(
        default=0, description="unknown-ref, malformed or oversized patches"
    )
    refused_patches: int = Field(default=0, description="patches that would leak the acting user")
    usage: CallUsage = Field(default_factory=lambda: CallUsage(), description="the one LMMem call")
    notes: list[str] = Field(default_factory=list, description="why things were skipped")


class Screened(BaseModel):
    """Patches that may be written and what was thrown out, with reasons."""

    accepted: list[NeighbourPatch] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list, description="reasons, one per patch")
    refused: list[str] = Field(default_factory=list, description="reasons, one per patch")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _runs(text: str, n: int = COPY_RUN) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _mentions_user(note: str, user_id: str) -> bool:
    """``user 12`` / ``user:12`` / ``u12``; a long non-numeric id also as a bare word."""
    uid = re.escape(user_id.lower())
    text = note.lower()
    if re.search(rf"\b(?:user|u|uid|customer|member)[\s:#_-]*{uid}\b", text):
        return True
    return (
        len(user_id) >= 4 and not user_id.isdigit() and re.search(rf"\b{uid}\b", text) is not None
    )


def leaks_user(note: str, loaded: LoadedContext, target_text: str) -> str | None:
    """Why ``note`` would leak the acting user into another memory, or None."""
    user_id = loaded.event.user_id
    if _mentions_user(note, user_id):
        return f"names the acting user {user_id!r}"
    # collaborative notes came from other users: only the user's own profile identifies them
    profile = loaded.inp.user_memory.split(" Note: ")[0]
    own = _runs(profile) - _runs(loaded.inp.item_title) - _runs(target_text)
    copied = own & _runs(note)
    if copied:
        return f"copies {COPY_RUN} words of the acting user's memory: {' '.join(min(copied))!r}"
    return None


def screen_patches(loaded: LoadedContext, patches: list[NeighbourPatch]) -> Screened:
    """Split the model's patches into accepted, dropped and refused (see the module docstring)."""
    texts = {n.ref: n.text for n in loaded.inp.neighbours}
    out = Screened()
    seen: set[str] = set()
    for patch in patches:
        ref, note = patch.ref.strip(), patch.note.strip()
        match = _REF.match(ref)
        if match is None or not note:
            out.dropped.append(f"{ref!r}: malformed (ref must be user:<id> / item:<id>, note text)")
        elif ref not in texts:
            out.dropped.append(f"{ref}: not one of the loaded neighbours")
        elif ref in seen:
            out.dropped.append(f"{ref}: a second patch for the same neighbour")
        elif len(note) > MAX_PATCH_CHARS:
            out.dropped.append(f"{ref}: {len(note)} characters (at most {MAX_PATCH_CHARS})")
        elif match.group(1) == "user" and (why := leaks_user(note, loaded, texts[ref])):
            out.refused.append(f"{ref}: {why}")
        else:
            seen.add(ref)
            out.accepted.append(NeighbourPatch(ref=ref, note=note))
    return out


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
    """Write item, neighbour patches, then the user rewrite, each once per cause and audited."""
    event = loaded.event
    report = PropagationReport(interaction_id=event.interaction_id, usage=usage)
    if loaded.skip_reason:
        report.notes.append(loaded.skip_reason)
        return report
    screened = screen_patches(loaded, result.neighbour_patches)
    report.dropped_patches, report.refused_patches = len(screened.dropped), len(screened.refused)
    report.notes.extend([*screened.dropped, *screened.refused])
    for reason in screened.refused:
        logger.warning("propagation %s: patch refused: %s", event.interaction_id, reason)
    item_text = result.item_memory.strip() or loaded.inp.item_memory
    _write(ws, report, "item", event.item_id, merge_rewrite(item_text, loaded.inp.item_memory))
    for patch in screened.accepted:
        kind, entity = patch.ref.split(":", 1)
        _write(ws, report, _kind(kind), entity, _appender(patch.note))
    user_text = result.user_memory.strip() or loaded.inp.user_memory
    _write(ws, report, "user", event.user_id, merge_rewrite(user_text, loaded.inp.user_memory))
    return report


def _appender(note: str) -> Any:
    return lambda current: append_note(current, note)


def _kind(kind: str) -> MemoryKind:
    return "user" if kind == "user" else "item"


def _write(
    ws: Workspace, report: PropagationReport, kind: MemoryKind, entity: str, text: Any
) -> None:
    record = apply_write(
        ws.memories, ws.events, kind, entity, text, cause=report.interaction_id, max_retries=8
    )
    if record is None:
        report.skipped += 1
        return
    ws.on_memory_write(kind, entity, record.text)
    facet_cache_for(ws).invalidate(kind, entity)
    report.writes.append(MemoryWrite(ref=f"{kind}:{entity}", version=record.version))


async def apply_patches(state: PropagateState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: write the result and settle the interaction's job."""
    from memory_store.worker import settle_job

    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    loaded: LoadedContext = state["loaded"]
    result: PropagationResult | None = state.get("result")
    if result is None:  # skipped before the model call
        result = PropagationResult(user_memory="", item_memory="")
    usage = state.get("usage") or CallUsage()
    report = await asyncio.to_thread(apply_propagation, ws, loaded, result, usage)
    await asyncio.to_thread(settle_job, ws.events, report.interaction_id)
    return {"report": report}
