"""Prompt for LLMRec: user memory, evidence and candidates in, a full ranking (JSON) out.

The same template serves every method: MemRec (facets), vanilla (history titles), naive-collab
(raw neighbours), isolated (own memory only); sections without data are left out, and the words
("movies", "watch history") follow the dataset (``prompts/domain.py``).
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, REQUEST_NOTE, data_block, json_lines, schema_text
from prompts.domain import domain_words
from schemas.records import Ranking, RankingInput

TASK_MARKER = "TASK: rank"

_SYSTEM = (
    TASK_MARKER + "\n"
    "You are LLMRec, the ranker of a recommender of {items}. Rank the candidate {items} for the "
    "user, best first.\n"
    "What you are given:\n"
    "- the user's own memory: a profile of their tastes, rewritten after each of their "
    "interactions;\n"
    "{evidence_note}"
    "- each candidate: its item_id, its title and {candidate_note};\n"
    "- when present, the user's request: what they want now.\n"
    "Rules: include every one of the {n_candidates} candidate item_ids exactly once, copied "
    "exactly from the CANDIDATES block; never add other ids. Give each item a score (higher is "
    "better, in the same order as the list), a one-sentence rationale in plain words, and "
    "evidence: the facet names or neighbour refs the rationale relies on (empty only when "
    "nothing applies).\n"
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
    "Candidates, one JSON object per line:\n{candidates_block}\n\n"
    "Return the ranking of all {n_candidates} candidates as JSON."
)

RANK_PROMPT = ChatPromptTemplate.from_messages([("system", _SYSTEM), ("human", _HUMAN)])
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "RANK_PROMPT": frozenset(
        {
            "items",
            "evidence_note",
            "candidate_note",
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


def _evidence_note(inp: RankingInput, items: str, history: str) -> str:
    """What the evidence sections mean, for the sections this input has."""
    notes = []
    if inp.facets:
        notes.append(
            "- preference facets: what the user's collaborative neighbours suggest they like "
            f"(user:<id> = another user with an overlapping {history}; item:<id> = one of the "
            f"{items} this user interacted with), each with a confidence from 0 to 1 and the "
            "refs of its evidence;\n"
        )
    if inp.history_titles:
        notes.append(f"- the titles of the user's {history}, oldest first;\n")
    if inp.raw_neighbours:
        notes.append(
            "- collaborative neighbours with their memories, unfiltered: user:<id> is another "
            f"user with an overlapping {history}, item:<id> one of the {items} this user "
            "interacted with; score is how relevant the neighbour is (higher first);\n"
        )
    return "".join(notes)


def variables(inp: RankingInput) -> dict[str, str]:
    """The values of every placeholder of :data:`RANK_PROMPT`."""
    words = domain_words(inp.dataset)
    facets = "\n".join(
        f"- {f.name} ({f.confidence:.2f}): {f.description} [{', '.join(f.evidence)}]"
        for f in inp.facets
    )
    neighbours = (
        json_lines(n.model_dump(exclude_defaults=True) for n in inp.raw_neighbours)
        if inp.raw_neighbours
        else ""
    )
    has_memory = any(c.memory for c in inp.candidates)
    candidate_note = (
        "its memory: what it is, enriched by other users' interactions ('Note:' sentences say "
        "who recently chose or rejected it)"
        if has_memory
        else "its catalogue description"
    )
    return {
        "items": words.items,
        "evidence_note": _evidence_note(inp, words.items, words.history),
        "candidate_note": candidate_note,
        "n_candidates": str(len(inp.candidates)),
        "data_note": f"{DATA_BLOCKS_NOTE} {REQUEST_NOTE}" if inp.request else DATA_BLOCKS_NOTE,
        "schema": schema_text(Ranking),
        "user_id": inp.user_id,
        "user_memory_block": data_block("USER_MEMORY", inp.user_memory or "(empty)"),
        "request_block": _section("What the user asks for now:", "REQUEST", inp.request or ""),
        "facets_block": _section(
            "Preference facets from collaborative neighbours, one per line: "
            "name (confidence): description [evidence refs]",
            "FACETS",
            facets,
        ),
        "history_block": _section(
            f"The user's {words.history}, oldest first:",
            "HISTORY",
            "\n".join(f"- {title}" for title in inp.history_titles),
        ),
        "neighbours_block": _section(
            "Collaborative neighbours, one JSON object per line (ref, kind, score, text):",
            "NEIGHBOURS",
            neighbours,
        ),
        "candidates_block": data_block(
            "CANDIDATES",
            json_lines(c.model_dump(exclude_defaults=True) for c in inp.candidates),
        ),
    }


def render(inp: RankingInput) -> list[BaseMessage]:
    """The chat messages asking for a ranking of every candidate."""
    return RANK_PROMPT.format_messages(**variables(inp))
