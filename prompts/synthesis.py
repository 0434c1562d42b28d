"""Prompt for LMMem's synthesis: curated neighbour memories in, at most N_f facets (JSON) out."""

from __future__ import annotations

from collections.abc import Iterable

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, REQUEST_NOTE, data_block, json_lines, schema_text
from prompts.domain import domain_words
from schemas.records import FacetSet, NeighbourSnippet, SynthesisInput

TASK_MARKER = "TASK: synthesize"

_SYSTEM = (
    TASK_MARKER + "\n"
    "You are LMMem, the memory manager of a collaborative recommender of {items}. From the "
    "user's own memory and the memories of their curated collaborative neighbours, synthesize "
    "the user's likely preferences as facets.\n"
    "The neighbours are of two kinds:\n"
    "- user:<id> is another user whose {history} overlaps this user's; their memory is their "
    "taste profile;\n"
    "- item:<id> is one of the {items} this user {interacted}; its memory says what it is and "
    "who else chose it.\n"
    "score is the curation score the domain rules gave the neighbour: higher means more "
    "relevant; the list is best first.\n"
    "Return at most {max_facets} facets. Each facet has a short name, a one- or two-sentence "
    "description, a confidence between 0 and 1 (how strongly the evidence supports it) and "
    "evidence: the refs of the neighbours that support it, chosen ONLY from: {refs}.\n"
    "Prefer facets supported by several neighbours; do not invent neighbours or {items}.\n"
    "{data_note}\n"
    "Answer with one JSON object and nothing else, matching this JSON schema:\n{schema}"
)
_HUMAN = (
    "User {user_id}.\n"
    "The user's own memory:\n{user_memory_block}\n\n"
    "{request_block}"
    "Curated neighbours, best first, one JSON object per line (ref, score, text):\n"
    "{neighbours_block}\n\n"
    "Return the facets as JSON."
)

SYNTHESIS_PROMPT = ChatPromptTemplate.from_messages([("system", _SYSTEM), ("human", _HUMAN)])
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "SYNTHESIS_PROMPT": frozenset(
        {
            "items",
            "history",
            "interacted",
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
    words = domain_words(inp.dataset)
    request_block = (
        "What the user asks for now:\n" + data_block("REQUEST", inp.request) + "\n\n"
        if inp.request
        else ""
    )
    return {
        "items": words.items,
        "history": words.history,
        "interacted": words.interacted,
        "max_facets": str(inp.max_facets),
        "refs": ", ".join(n.ref for n in inp.neighbours) or "(no neighbours)",
        "data_note": f"{DATA_BLOCKS_NOTE} {REQUEST_NOTE}" if inp.request else DATA_BLOCKS_NOTE,
        "schema": schema_text(FacetSet),
        "user_id": inp.user_id,
        "user_memory_block": data_block("USER_MEMORY", inp.user_memory or "(empty)"),
        "request_block": request_block,
        "neighbours_block": data_block("NEIGHBOURS", neighbour_lines(inp.neighbours)),
    }


def render(inp: SynthesisInput) -> list[BaseMessage]:
    """The chat messages asking for facets."""
    return SYNTHESIS_PROMPT.format_messages(**variables(inp))
