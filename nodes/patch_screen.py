"""The screen of the propagate graph's writes (``nodes/apply_patches.py``): what may be written.

ONE screen (``refusal``) guards every write: the user's rewrite, the item's update and each
neighbour patch; the rules are in ``nodes/apply_patches.py``'s docstring.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter

from pydantic import BaseModel, Field

from schemas.propagate_state import LoadedContext
from schemas.records import NeighbourPatch

logger = logging.getLogger(__name__)

MAX_PATCH_CHARS = 600
COPY_RUN = 4  # consecutive words of catalogue text (an item's description) that make a copy
MEMORY_COPY_RUN = 6  # consecutive words of a user's memory that make a copy (prose repeats)
NOTE_MARKER = " Note: "  # collaborative notes follow a memory's own text (memory_store.summaries)
_WORD = re.compile(r"[a-z0-9']+")
_REF = re.compile(r"^(user|item):(\S.*)$")
_CUT = re.compile(r"\b(?:user|item):\S+")  # refs are pointers, not text: runs do not span them
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
    """Lower-case words without bare numbers (counts and percentages are not text to copy)."""
    return [w for w in _WORD.findall(text.lower()) if not w.isdigit()]


def _runs(text: str, n: int = COPY_RUN) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _cut_runs(text: str, names: tuple[str, ...], n: int = COPY_RUN) -> set[tuple[str, ...]]:
    """Word runs of ``text`` with catalogue ``names`` and refs cut out (no run spans one)."""
    pieces = _CUT.split(text)
    for name in names:  # longest first; only the names the text holds cost a split
        if name in text:
            pieces = [part for piece in pieces for part in piece.split(name)]
    return set().union(*(_runs(piece, n) for piece in pieces))


def _sources(loaded: LoadedContext) -> dict[str, tuple[str, int]]:
    """What a write must not copy, per loaded ref: (text, run length).

    Catalogue text (the acting item's and item neighbours' descriptions: where an injection
    hides) by COPY_RUN words; user memories (profiles: what identifies a person) by
    MEMORY_COPY_RUN words, their collaborative notes left out.
    """
    acting_item = f"item:{loaded.event.item_id}"
    out = {
        f"user:{loaded.event.user_id}": (own_text(loaded.inp.user_memory), MEMORY_COPY_RUN),
        acting_item: (
            loaded.catalogue.get(acting_item, own_text(loaded.inp.item_memory)),
            COPY_RUN,
        ),
    }
    for n in loaded.inp.neighbours:
        if n.kind == "user":
            out[n.ref] = (own_text(n.text), MEMORY_COPY_RUN)
        else:
            out[n.ref] = (loaded.catalogue.get(n.ref, own_text(n.text)), COPY_RUN)
    return out


def _copied(
    note: str, loaded: LoadedContext, target: str, target_text: str, refs: set[str]
) -> tuple[str, tuple[str, ...]] | None:
    """The first source among ``refs`` whose distinctive runs ``note`` copies, and the run.

    A phrase two sources share ("interacted with items, returns to") is the shape of a profile,
    not something that identifies one of them, and what the target holds already is no leak.
    """
    names = catalogue_names(loaded, target)
    sources = tuple((ref, text, n) for ref, (text, n) in _sources(loaded).items())
    # the sources are cut by the names every target may use (cached across the writes)
    distinct = _distinct(sources, catalogue_names(loaded, ""))
    for ref, _, n in sources:
        if ref not in refs or ref == target or not distinct[ref]:
            continue
        written = _cut_runs(note, names, n) - _runs(target_text, n)
        copied = distinct[ref] & written
        if copied:
            return ref, min(copied)
    return None


@functools.lru_cache(maxsize=8)  # the propagations in flight; each entry holds word runs
def _distinct(
    sources: tuple[tuple[str, str, int], ...], names: tuple[str, ...]
) -> dict[str, frozenset[tuple[str, ...]]]:
    """Per source ref, its runs that no other source has.

    Cached: one propagation screens a dozen writes against the same sources.
    """
    runs = {ref: _cut_runs(text, names, n) for ref, text, n in sources}
    seen: Counter[tuple[str, ...]] = Counter(r for rs in runs.values() for r in rs)
    return {ref: frozenset(r for r in rs if seen[r] == 1) for ref, rs in runs.items()}


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


def catalogue_names(loaded: LoadedContext, target: str) -> tuple[str, ...]:
    """Catalogue names a text written into ``target`` may use.

    Every memory may name the item and attribute names; the acting user's own memory may also
    name the titles of their history, and an item neighbour its own title. The titles of the
    user's history are theirs: in another memory they would tell what the user chose.
    """
    names = [loaded.inp.item_title, *loaded.attributes]
    if target == f"user:{loaded.event.user_id}":
        names += loaded.titles
    names += [n.title for n in loaded.inp.neighbours if n.ref == target and n.title]
    return _safe_names(tuple(names))


@functools.lru_cache(maxsize=256)
def _safe_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The names that are no instruction, longest first (cached: a propagation asks often)."""
    allowed = {name for name in names if name.strip() and instruction_like(name) is None}
    return tuple(sorted(allowed, key=lambda name: (-len(name), name)))


def leaks_user(note: str, loaded: LoadedContext, target_text: str, target: str = "") -> str | None:
    """Why ``note`` would leak the acting user into another memory, or None."""
    user_ref = f"user:{loaded.event.user_id}"
    if _mentions_user(note, loaded.event.user_id):
        return f"names the acting user {loaded.event.user_id!r}"
    if found := _copied(note, loaded, target, target_text, {user_ref}):
        return f"copies {len(found[1])} words of the acting user's memory: {' '.join(found[1])!r}"
    return None


def instruction_like(note: str) -> str | None:
    """Why ``note`` reads like an instruction to a model (``INSTRUCTION_PATTERNS``), or None."""
    for pattern in INSTRUCTION_PATTERNS:
        found = pattern.search(note)
        if found:
            return f"reads like an instruction ({found.group(0)!r})"
    return None


def copies_text(note: str, loaded: LoadedContext, target: str, target_text: str = "") -> str | None:
    """Why ``note`` copies item text or another loaded memory into ``target``, or None."""
    others = set(_sources(loaded)) - {f"user:{loaded.event.user_id}"}
    if found := _copied(note, loaded, target, target_text, others):
        ref, run = found
        what = "the item's text" if ref == f"item:{loaded.event.item_id}" else f"{ref}'s memory"
        return f"copies {len(run)} words of {what}: {' '.join(run)!r}"
    return None


def refusal(note: str, loaded: LoadedContext, target: str, target_text: str) -> str | None:
    """Why ``note`` must not be written into the memory ``target`` (holding ``target_text``).

    The one screen of every propagation write (see the module docstring).
    """
    if why := instruction_like(note):
        return why
    if target != f"user:{loaded.event.user_id}" and (
        why := leaks_user(note, loaded, target_text, target)
    ):
        return why
    return copies_text(note, loaded, target, target_text)


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


def screen_rewrite(
    loaded: LoadedContext, target: str, old: str, new: str
) -> tuple[str, str | None]:
    """The text to write into ``target`` (the rewrite, or ``old`` when refused) and why refused."""
    new = new.strip()
    if not new or new == old:
        return old, None
    why = refusal(new, loaded, target, old)
    return (old, f"{target} rewrite: {why}") if why else (new, None)
