"""Post-processing of model answers: what the roles enforce whatever the model said.

A ranking keeps each candidate once (``dedupe_ranking``) and every item gets a rationale
(``fill_rationales``); facets are at most ``max_facets`` with evidence from the given neighbours
only (``clean_facets``); propagation patches only the given neighbours, once each, within the
prompt's length caps (``clean_propagation``). Each function returns how many fixes it made.
"""

from __future__ import annotations

from collections.abc import Sequence

from prompts import propagation as propagation_prompt
from schemas.records import (
    Facet,
    NeighbourPatch,
    PropagationInput,
    PropagationResult,
    RankedItem,
    SynthesisInput,
)


def dedupe_ranking(
    items: Sequence[RankedItem], candidate_ids: Sequence[str]
) -> tuple[list[RankedItem], int]:
    """Keep the first occurrence of each candidate id; returns the items and how many dropped."""
    allowed = set(candidate_ids)
    seen: set[str] = set()
    kept: list[RankedItem] = []
    for item in items:
        if item.item_id in allowed and item.item_id not in seen:
            seen.add(item.item_id)
            kept.append(item)
    return kept, len(items) - len(kept)


def fill_rationales(items: Sequence[RankedItem]) -> tuple[list[RankedItem], int]:
    """Give every item a non-empty rationale (built from its evidence); count the fills."""
    out: list[RankedItem] = []
    filled = 0
    for item in items:
        if item.rationale.strip():
            out.append(item)
            continue
        filled += 1
        reason = (
            "Supported by " + ", ".join(item.evidence) + "."
            if item.evidence
            else "Ranked by the model without a stated reason."
        )
        out.append(item.model_copy(update={"rationale": reason}))
    return out, filled


def clean_facets(facets: Sequence[Facet], inp: SynthesisInput) -> tuple[list[Facet], int]:
    """At most ``max_facets`` distinct facets with evidence from the given neighbours only."""
    refs = {n.ref for n in inp.neighbours}
    out: list[Facet] = []
    names: set[str] = set()
    fixes = 0
    for facet in facets:
        key = facet.name.strip().lower()
        if not key or key in names or len(out) >= inp.max_facets:
            fixes += 1
            continue
        names.add(key)
        evidence = list(dict.fromkeys(ref for ref in facet.evidence if ref in refs))
        fixes += len(evidence) != len(facet.evidence)
        out.append(facet.model_copy(update={"evidence": evidence}))
    return out, fixes


def check_propagation(result: PropagationResult) -> None:
    """An empty rewrite would erase the user's memory: treat it as malformed."""
    if not result.user_memory.strip():
        raise ValueError("user_memory is empty; it must be the rewritten memory of the user")


def _cap(text: str, limit: int) -> tuple[str, int]:
    """``text`` stripped and cut to ``limit`` characters; 1 when it had to be cut."""
    text = text.strip()
    return (text, 0) if len(text) <= limit else (text[: limit - 1].rstrip() + "\u2026", 1)


def clean_propagation(
    result: PropagationResult, inp: PropagationInput
) -> tuple[PropagationResult, int]:
    """Patches only for the given neighbours (one each, non-empty), texts within their caps."""
    refs = {n.ref for n in inp.neighbours}
    patches: list[NeighbourPatch] = []
    seen: set[str] = set()
    fixes = 0
    for patch in result.neighbour_patches:
        if patch.ref not in refs or patch.ref in seen or not patch.note.strip():
            fixes += 1
            continue
        seen.add(patch.ref)
        note, cut = _cap(patch.note, propagation_prompt.PATCH_NOTE_MAX_CHARS)
        fixes += cut
        patches.append(NeighbourPatch(ref=patch.ref, note=note))
    user_memory, cut_user = _cap(result.user_memory, propagation_prompt.USER_MEMORY_MAX_CHARS)
    item_memory, cut_item = _cap(result.item_memory, propagation_prompt.ITEM_MEMORY_MAX_CHARS)
    if not item_memory:
        item_memory = inp.item_memory  # an empty update keeps the old memory
    cleaned = PropagationResult(
        user_memory=user_memory, item_memory=item_memory, neighbour_patches=patches
    )
    return cleaned, fixes + cut_user + cut_item
