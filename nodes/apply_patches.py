"""The `apply_patches` node of the propagate graph: screen the model's output, then write it.

Every write goes through ``memory_store.writes.apply_writes`` with the interaction id as its
cause: compare-and-set with retry, at most once per (cause, memory), audited, batched per kind
(one store read and one store write for the item memories, the same for the user memories, each
text embedded once). Item memories come first and the user rewrite last; a retried job re-applies
the answer its first attempt kept, each write skipped when it was made already.

Screening: a patch for a ref that was not loaded, a malformed one (bad ref, empty, repeated) or an
oversized one (> MAX_PATCH_CHARS) is dropped. A neighbour patch is refused when it names the acting
user, copies a run of >= COPY_RUN words of the item's title or own text, or of another entity's
own memory text (the acting user's profile, another loaded neighbour's memory: the part before
its collaborative notes), or reads like an instruction (``INSTRUCTION_PATTERNS``). Item text may
carry an injection and a profile identifies its user, so neither may travel to other memories;
neighbour notes refer to the item by its ref. The item's own memory update may keep its text.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from memory_store.claims import release_after_error, still_held
from memory_store.facet_cache import facet_cache_for
from memory_store.memories import MemoryKind
from memory_store.summaries import append_note, notes_of
from memory_store.workspace import Workspace, aworkspace_for
from memory_store.writes import PlannedWrite, apply_writes
from schemas.context import MemRecContext
from schemas.propagate_state import LoadedContext, MemoryWrite, PropagateState, PropagationReport
from schemas.records import CallUsage, NeighbourPatch, PropagationResult

logger = logging.getLogger(__name__)

MAX_PATCH_CHARS = 600
COPY_RUN = 4  # consecutive words copied from item text or another memory that count as a copy
NOTE_MARKER = " Note: "  # collaborative notes follow a memory's own text (memory_store.summaries)
_WORD = re.compile(r"[a-z0-9']+")
_REF = re.compile(r"^(user|item):(\S.*)$")
# What a note about shared tastes never needs: instruction overrides, role labels, fake data-block
# delimiters, markup, JSON / template braces, code fences, talk of schemas and bidi overrides.
# Kept small on purpose: copied item or profile text is caught by COPY_RUN instead.
INSTRUCTION_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.I)
    for p in (
        r"\bignore\b.{0,20}\b(?:all|any|previous|prior|earlier|above|preceding)\b",
        r"\bdisregard\b",
        r"\binstructions?\b",
        r"\bsystem\s+prompt\b",
        r"\byou\s+are\s+now\b",
        r"\bnew\s+task\b",
        r"\b(?:system|assistant|developer)\s*:",
        r"<<<|>>>",
        r"</?[a-z_]+\s*>",
        r"[{}]|```",
        r"\bschema\b|\bend\s+of\s+data\b",
        "[\u202a-\u202e\u2066-\u2069]",
    )
)


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


def own_text(memory: str) -> str:
    """A memory's own text, without the collaborative notes other propagations appended."""
    return memory.split(NOTE_MARKER)[0]


def leaks_user(note: str, loaded: LoadedContext, target_text: str) -> str | None:
    """Why ``note`` would leak the acting user into another memory, or None."""
    user_id = loaded.event.user_id
    if _mentions_user(note, user_id):
        return f"names the acting user {user_id!r}"
    # collaborative notes came from other users: only the user's own profile identifies them
    profile = own_text(loaded.inp.user_memory)
    own = _runs(profile) - _runs(loaded.inp.item_title) - _runs(target_text)
    copied = own & _runs(note)
    if copied:
        return f"copies {COPY_RUN} words of the acting user's memory: {' '.join(min(copied))!r}"
    return None


def instruction_like(note: str) -> str | None:
    """Why ``note`` reads like an instruction to a model (``INSTRUCTION_PATTERNS``), or None."""
    for pattern in INSTRUCTION_PATTERNS:
        found = pattern.search(note)
        if found:
            return f"reads like an instruction ({found.group(0)!r})"
    return None


def copies_text(note: str, loaded: LoadedContext, target: str) -> str | None:
    """Why ``note`` copies item text or another neighbour's memory into ``target``, or None."""
    written = _runs(note)
    item = _runs(loaded.inp.item_title) | _runs(own_text(loaded.inp.item_memory))
    if copied := item & written:
        return f"copies {COPY_RUN} words of the item's text: {' '.join(min(copied))!r}"
    texts = {n.ref: n.text for n in loaded.inp.neighbours}
    already = _runs(texts.get(target, ""))  # what the target holds already is not a leak
    for ref, text in texts.items():
        if ref != target and (copied := (_runs(own_text(text)) - already) & written):
            return f"copies {COPY_RUN} words of {ref}'s memory: {' '.join(min(copied))!r}"
    return None


def refusal(note: str, loaded: LoadedContext, target: str, target_text: str) -> str | None:
    """Why a patch into the neighbour ``target`` must not be written, or None when it may."""
    return (
        leaks_user(note, loaded, target_text)
        or instruction_like(note)
        or copies_text(note, loaded, target)
    )


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
        elif why := refusal(note, loaded, ref, texts[ref]):
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
    if not still_held(ws.events, loaded.owner, event.interaction_id):
        report.notes.append("another executor took this job over (lease lapsed): nothing written")
        return report
    screened = screen_patches(loaded, result.neighbour_patches)
    report.dropped_patches, report.refused_patches = len(screened.dropped), len(screened.refused)
    report.notes.extend([*screened.dropped, *screened.refused])
    for reason in screened.refused:
        logger.warning("propagation %s: patch refused: %s", event.interaction_id, reason)
    item_text = result.item_memory.strip() or loaded.inp.item_memory
    writes = [PlannedWrite("item", event.item_id, merge_rewrite(item_text, loaded.inp.item_memory))]
    for patch in screened.accepted:
        kind, entity = patch.ref.split(":", 1)
        writes.append(PlannedWrite(_kind(kind), entity, _appender(patch.note)))
    user_text = result.user_memory.strip() or loaded.inp.user_memory
    writes.append(
        PlannedWrite("user", event.user_id, merge_rewrite(user_text, loaded.inp.user_memory))
    )
    _write_all(ws, report, writes)
    return report


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
        ws.on_memory_write(w.kind, w.entity_id, out.record.text, out.vector)
        cache.invalidate(w.kind, w.entity_id)
        report.writes.append(MemoryWrite(ref=f"{w.kind}:{w.entity_id}", version=out.record.version))


def _apply_and_settle(
    ws: Workspace, loaded: LoadedContext, result: PropagationResult, usage: CallUsage
) -> PropagationReport:
    """Write, then complete the job when this run holds it (hand it back if the writes fail)."""
    iid = loaded.event.interaction_id
    try:
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
    report = await asyncio.to_thread(_apply_and_settle, ws, loaded, result, usage)
    return {"report": report}
