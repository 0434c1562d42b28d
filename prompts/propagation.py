"""Prompt for LMMem's one propagation call: user reflection, item update, neighbour patches.

The caps below bound what propagation may write; ``roles/llm_roles.py`` truncates to them.
"""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, data_block, json_lines, schema_text
from prompts.tokens import truncate_to_tokens
from schemas.records import NeighbourSnippet, PropagationInput, PropagationResult

TASK_MARKER = "TASK: propagate"
USER_MEMORY_MAX_CHARS = 1200
ITEM_MEMORY_MAX_CHARS = 1200
PATCH_NOTE_MAX_CHARS = 300

_SYSTEM = (
    TASK_MARKER + "\n"
    "You are LMMem, the memory manager of a collaborative recommender. A user just interacted "
    "with an item. In one answer:\n"
    "1. user_memory: rewrite the user's memory by self-reflection, integrating what this "
    "interaction says about their taste; concise, at most {user_memory_chars} characters; keep "
    "durable preferences, drop repetition.\n"
    "2. item_memory: update the item's memory with who enjoys it and why, at most "
    "{item_memory_chars} characters.\n"
    "3. neighbour_patches: short notes (at most {patch_chars} characters each) to add to the "
    "memories of affected neighbours, ONLY for these refs: {refs}; skip neighbours the "
    "interaction says nothing about.\n"
    "Never copy one user's personal details (names, places, demographics, private remarks) into "
    "another user's or an item's memory: write about shared tastes and items only.\n"
    "{data_note}\n"
    "Answer with one JSON object and nothing else, matching this JSON schema:\n{schema}"
)
_HUMAN = (
    "The interaction:\n{event_block}\n\n"
    "The item's title:\n{item_title_block}\n\n"
    "The user's current memory:\n{user_memory_block}\n\n"
    "The item's current memory:\n{item_memory_block}\n\n"
    "Neighbours, one JSON object per line (ref, kind, score, text):\n{neighbours_block}\n\n"
    "Return user_memory, item_memory and neighbour_patches as JSON."
)

PROPAGATION_PROMPT = ChatPromptTemplate.from_messages([("system", _SYSTEM), ("human", _HUMAN)])
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "PROPAGATION_PROMPT": frozenset(
        {
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
            "neighbours_block",
        }
    ),
}


def variables(inp: PropagationInput) -> dict[str, str]:
    """The values of every placeholder of :data:`PROPAGATION_PROMPT`."""
    return {
        "user_memory_chars": str(USER_MEMORY_MAX_CHARS),
        "item_memory_chars": str(ITEM_MEMORY_MAX_CHARS),
        "patch_chars": str(PATCH_NOTE_MAX_CHARS),
        "refs": ", ".join(n.ref for n in inp.neighbours) or "(none: return no patches)",
        "data_note": DATA_BLOCKS_NOTE,
        "schema": schema_text(PropagationResult),
        "event_block": data_block("EVENT", inp.event.model_dump_json()),
        "item_title_block": data_block("ITEM_TITLE", inp.item_title),
        "user_memory_block": data_block("USER_MEMORY", inp.user_memory or "(empty)"),
        "item_memory_block": data_block("ITEM_MEMORY", inp.item_memory or "(empty)"),
        "neighbours_block": data_block("NEIGHBOURS", json_lines(_gists(inp))),
    }


NEIGHBOUR_GIST_TOKENS = 60  # a patch needs the gist of a neighbour's memory, not all of it


def _gists(inp: PropagationInput) -> list[NeighbourSnippet]:
    """Neighbours with their memory cut to a gist: keeps the call within its token budget."""
    return [
        n.model_copy(update={"text": truncate_to_tokens(n.text, NEIGHBOUR_GIST_TOKENS)})
        for n in inp.neighbours
    ]


def render(inp: PropagationInput) -> list[BaseMessage]:
    """The chat messages asking for the propagation result."""
    return PROPAGATION_PROMPT.format_messages(**variables(inp))
