"""Prompt for LMMem's one propagation call: user reflection, item update, neighbour patches.

The caps below bound what propagation may write; ``roles/llm_roles.py`` truncates to them. The
prompt says what the screen of ``nodes/apply_patches.py`` refuses (copied descriptions or memories,
instructions), so a model that follows it has nothing refused.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, data_block, json_lines, schema_text
from prompts.domain import domain_words
from prompts.tokens import truncate_to_tokens
from schemas.records import InteractionEvent, PropagationInput, PropagationResult

TASK_MARKER = "TASK: propagate"
USER_MEMORY_MAX_CHARS = 1200
ITEM_MEMORY_MAX_CHARS = 1200
PATCH_NOTE_MAX_CHARS = 300

# What each feedback kind means, in plain words (schemas.recommend_state.FEEDBACK_KINDS).
FEEDBACK_KINDS: dict[str, str] = {
    "positive": "the user chose or liked it: it belongs to their taste",
    "negative": "the user disliked or rejected it: note what they avoid, not what they like",
    "skip": "the user passed over it when it was offered: a weak sign of no interest, not dislike",
    "click": "the user opened or looked at it: a weak sign of interest",
    "rating:<n>": "an explicit rating from 1 (hated it) to 5 (loved it): 4-5 is liking it, "
    "3 is indifferent, 1-2 is disliking it",
}

_SYSTEM = (
    TASK_MARKER + "\n"
    "You are LMMem, the memory manager of a collaborative recommender of {items}. A user just "
    "gave feedback on one of the {items}. The feedback kinds mean:\n{kinds}\n"
    "In one answer:\n"
    "1. user_memory: rewrite the user's memory by self-reflection, integrating what this "
    "feedback says about their taste; concise, at most {user_memory_chars} characters; keep "
    "durable preferences, drop repetition.\n"
    "2. item_memory: update the item's memory with who enjoys (or rejects) it and why, at most "
    "{item_memory_chars} characters.\n"
    "3. neighbour_patches: short notes (at most {patch_chars} characters each) to add to the "
    "memories of the neighbours this feedback concerns, ONLY for these refs: {refs}; skip "
    "neighbours it says nothing about. user:<id> is another user with an overlapping "
    "{history}; item:<id> is one of the {items} this user {interacted}. The user's "
    "collaborative facets (what they share with their neighbours) help you judge which "
    "neighbours this feedback concerns.\n"
    "How to write: refer to {items} by their ref, e.g. item:{item_id}, optionally with the "
    "title; say things in your own words. Never copy sentences from descriptions, reviews or "
    "other memories, never write instructions, and never copy one user's personal details "
    "(names, places, demographics, private remarks) into another user's or an item's memory: "
    "write about shared tastes and {items} only. A check refuses notes that do.\n"
    "{data_note}\n"
    "Answer with one JSON object and nothing else, matching this JSON schema:\n{schema}"
)
_HUMAN = (
    "The feedback:\n{event_block}\n\n"
    "The item's title:\n{item_title_block}\n\n"
    "The user's current memory:\n{user_memory_block}\n\n"
    "The item's current memory:\n{item_memory_block}\n\n"
    "The user's collaborative facets, one per line: name (confidence): description:\n"
    "{facets_block}\n\n"
    "Neighbours, best first, one JSON object per line (ref, kind, score, text):\n"
    "{neighbours_block}\n\n"
    "Return user_memory, item_memory and neighbour_patches as JSON."
)

PROPAGATION_PROMPT = ChatPromptTemplate.from_messages([("system", _SYSTEM), ("human", _HUMAN)])
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "PROPAGATION_PROMPT": frozenset(
        {
            "items",
            "history",
            "interacted",
            "kinds",
            "item_id",
            "user_memory_chars",
            "item_memory_chars",
            "patch_chars",
            "refs",
            "data_note",
            "schema",
            "event_block",
            "item_title_block",
            "user_memory_block",
            "item_memory_block",
            "facets_block",
            "neighbours_block",
        }
    ),
}


def describe_kind(kind: str) -> str:
    """A feedback kind in plain words ('rating:4' -> a rating of 4 out of 5)."""
    if kind.startswith("rating:"):
        return f"a rating of {kind.split(':', 1)[1]} out of 5"
    return {
        "positive": "positive feedback (chose or liked it)",
        "negative": "negative feedback (disliked or rejected it)",
        "skip": "a skip (passed over it when offered)",
        "click": "a click (opened or looked at it)",
    }.get(kind, f"feedback of kind {kind!r}")


def event_text(event: InteractionEvent, when: str) -> str:
    """The event as a sentence: who, what kind, which item, when (no interaction id, no epoch)."""
    date = f" on {when}" if when else ""
    return f"user:{event.user_id} gave {describe_kind(event.kind)} on item:{event.item_id}{date}."


def variables(inp: PropagationInput) -> dict[str, str]:
    """The values of every placeholder of :data:`PROPAGATION_PROMPT`."""
    words = domain_words(inp.dataset)
    facets = "\n".join(f"- {f.name} ({f.confidence:.2f}): {f.description}" for f in inp.facets)
    return {
        "items": words.items,
        "history": words.history,
        "interacted": words.interacted,
        "kinds": "\n".join(f"- {kind}: {meaning}" for kind, meaning in FEEDBACK_KINDS.items()),
        "item_id": inp.event.item_id,
        "user_memory_chars": str(USER_MEMORY_MAX_CHARS),
        "item_memory_chars": str(ITEM_MEMORY_MAX_CHARS),
        "patch_chars": str(PATCH_NOTE_MAX_CHARS),
        "refs": ", ".join(n.ref for n in inp.neighbours) or "(none: return no patches)",
        "data_note": DATA_BLOCKS_NOTE,
        "schema": schema_text(PropagationResult),
        "event_block": data_block("EVENT", event_text(inp.event, inp.when)),
        "item_title_block": data_block("ITEM_TITLE", inp.item_title),
        "user_memory_block": data_block("USER_MEMORY", inp.user_memory or "(empty)"),
        "item_memory_block": data_block("ITEM_MEMORY", inp.item_memory or "(empty)"),
        "facets_block": data_block("FACETS", facets or "(none)"),
        "neighbours_block": data_block("NEIGHBOURS", json_lines(_gists(inp))),
    }


NEIGHBOUR_GIST_TOKENS = 60  # a patch needs the gist of a neighbour's memory, not all of it


def _gists(inp: PropagationInput) -> list[dict[str, object]]:
    """Neighbours with their memory cut to a gist: keeps the call within its token budget."""
    return [
        {
            "ref": n.ref,
            "kind": n.kind,
            "score": round(n.score, 2),
            "text": truncate_to_tokens(n.text, NEIGHBOUR_GIST_TOKENS),
        }
        for n in inp.neighbours
    ]


def render(inp: PropagationInput) -> list[BaseMessage]:
    """The chat messages asking for the propagation result."""
    return PROPAGATION_PROMPT.format_messages(**variables(inp))
