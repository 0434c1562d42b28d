"""Prompt for LLMRec: user memory, facets and candidates in, a full ranking (JSON) out.

The same template serves the three methods: MemRec (facets), vanilla (history titles) and
naive-collab (raw neighbours); sections without data are left out.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, data_block, json_lines, schema_text
from schemas.records import Ranking, RankingInput

TASK_MARKER = "TASK: rank"

_SYSTEM = (
    TASK_MARKER + "\n"
    "You are LLMRec, the ranker of a recommender. Rank the candidate items for the user, best "
    "first, using the user's memory and the evidence given (preference facets, watch history or "
    "neighbours) and, when present, the user's request.\n"
    "Rules: include every one of the {n_candidates} candidate item_ids exactly once, copied "
    "exactly from the CANDIDATES block; never add other ids. Give each item a score (higher is "
    "better, in the same order as the list), a one-sentence rationale, and evidence: the facet "
    "names or neighbour refs the rationale relies on (empty only when nothing applies).\n"
    "{data_note}\n"
    "Answer with one JSON object and nothing else, matching this JSON schema:\n{schema}"
)
_HUMAN = (
    "User {user_id}.\n"
    "The user's own memory:\n{user_memory_block}\n\n"
    "{request_block}"
    "{facets_block}"
    "{history_block}"
    "{neighbours_block}"
    "Candidates, one JSON object per line (item_id, title, text):\n{candidates_block}\n\n"
    "Return the ranking of all {n_candidates} candidates as JSON."
)

RANK_PROMPT = ChatPromptTemplate.from_messages([("system", _SYSTEM), ("human", _HUMAN)])
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "RANK_PROMPT": frozenset(
        {
            "n_candidates",
            "data_note",
            "schema",
            "user_id",
            "user_memory_block",
            "request_block",
            "facets_block",
            "history_block",
            "neighbours_block",
            "candidates_block",
        }
    ),
}


def _section(intro: str, tag: str, content: str) -> str:
    """An optional prompt section: empty when there is no content."""
    return f"{intro}\n{data_block(tag, content)}\n\n" if content else ""


def variables(inp: RankingInput) -> dict[str, str]:
    """The values of every placeholder of :data:`RANK_PROMPT`."""
    facets = "\n".join(
        f"- {f.name} ({f.confidence:.2f}): {f.description} [{', '.join(f.evidence)}]"
        for f in inp.facets
    )
    neighbours = json_lines(inp.raw_neighbours) if inp.raw_neighbours else ""
    return {
        "n_candidates": str(len(inp.candidates)),
        "data_note": DATA_BLOCKS_NOTE,
        "schema": schema_text(Ranking),
        "user_id": inp.user_id,
        "user_memory_block": data_block("USER_MEMORY", inp.user_memory or "(empty)"),
        "request_block": _section("What the user asked for now:", "REQUEST", inp.request or ""),
        "facets_block": _section(
            "Preference facets synthesized from collaborative neighbours, one per line: "
            "name (confidence): description [evidence refs]",
            "FACETS",
            facets,
        ),
        "history_block": _section(
            "Titles the user interacted with, oldest first:",
            "HISTORY",
            "\n".join(f"- {title}" for title in inp.history_titles),
        ),
        "neighbours_block": _section(
            "Collaborative neighbours, one JSON object per line (ref, kind, score, text):",
            "NEIGHBOURS",
            neighbours,
        ),
        "candidates_block": data_block("CANDIDATES", json_lines(inp.candidates)),
    }


def render(inp: RankingInput) -> list[BaseMessage]:
    """The chat messages asking for a ranking of every candidate."""
    return RANK_PROMPT.format_messages(**variables(inp))
