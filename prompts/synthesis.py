"""Prompt for LMMem's synthesis: curated neighbour memories in, at most N_f facets (JSON) out."""

from __future__ import annotations

from collections.abc import Iterable

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, data_block, json_lines, schema_text
from schemas.records import FacetSet, NeighbourSnippet, SynthesisInput

TASK_MARKER = "TASK: synthesize"

_SYSTEM = (
    TASK_MARKER + "\n"
    "You are LMMem, the memory manager of a collaborative recommender. From the user's own memory "
    "and the memories of their curated collaborative neighbours, synthesize the user's likely "
    "preferences as facets.\n"
    "Return at most {max_facets} facets. Each facet has a short name, a one- or two-sentence "
    "description, a confidence between 0 and 1 (how strongly the evidence supports it) and "
    "evidence: the refs of the neighbours that support it, chosen ONLY from: {refs}.\n"
    "Prefer facets supported by several neighbours; do not invent neighbours or items.\n"
    "{data_note}\n"
    "Answer with one JSON object and nothing else, matching this JSON schema:\n{schema}"
)
_HUMAN = (
    "User {user_id}.\n"
    "The user's own memory:\n{user_memory_block}\n\n"
    "{request_block}"
    "Curated neighbours, one JSON object per line (ref, score, text):\n{neighbours_block}\n\n"
    "Return the facets as JSON."
)

SYNTHESIS_PROMPT = ChatPromptTemplate.from_messages([("system", _SYSTEM), ("human", _HUMAN)])
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "SYNTHESIS_PROMPT": frozenset(
        {
            "max_facets",
            "refs",
            "data_note",
            "schema",
            "user_id",
            "user_memory_block",
            "request_block",
            "neighbours_block",
        }
    ),
}


def neighbour_lines(neighbours: Iterable[NeighbourSnippet]) -> str:
    """The neighbours as the prompt shows them: ref, curation score, memory text."""
    return json_lines(
        {"ref": n.ref, "score": round(n.score, 2), "text": n.text} for n in neighbours
    )


def variables(inp: SynthesisInput) -> dict[str, str]:
    """The values of every placeholder of :data:`SYNTHESIS_PROMPT`."""
    request_block = (
        "What the user asked for now:\n" + data_block("REQUEST", inp.request) + "\n\n"
        if inp.request
        else ""
    )
    return {
        "max_facets": str(inp.max_facets),
        "refs": ", ".join(n.ref for n in inp.neighbours) or "(no neighbours)",
        "data_note": DATA_BLOCKS_NOTE,
        "schema": schema_text(FacetSet),
        "user_id": inp.user_id,
        "user_memory_block": data_block("USER_MEMORY", inp.user_memory or "(empty)"),
        "request_block": request_block,
        "neighbours_block": data_block("NEIGHBOURS", neighbour_lines(inp.neighbours)),
    }


def render(inp: SynthesisInput) -> list[BaseMessage]:
    """The chat messages asking for facets."""
    return SYNTHESIS_PROMPT.format_messages(**variables(inp))
