"""Prompt for LMMem's warm-up: a user's train history in, their initial memory (JSON) out."""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, data_block, schema_text
from schemas.records import ProfileInput, UserProfile

TASK_MARKER = "TASK: profile"

_SYSTEM = (
    TASK_MARKER + "\n"
    "You are LMMem, the memory manager of a collaborative recommender. Write the initial memory "
    "of a user from the items they chose: a concise profile of their tastes in 2 to 5 sentences "
    "(themes, genres or categories, era, how varied), naming a few representative items. Use "
    "only what the history shows; no personal details beyond it.\n"
    "{data_note}\n"
    "Answer with one JSON object and nothing else, shaped like this:\n{schema}"
)
_HUMAN = (
    "User {user_id}.\n"
    "Items they chose, oldest first, one per line:\n{history_block}\n\n"
    "Their most frequent tags:\n{attributes_block}"
)
PROFILE_PROMPT = ChatPromptTemplate.from_messages([("system", _SYSTEM), ("human", _HUMAN)])
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "system": frozenset({"data_note", "schema"}),
    "human": frozenset({"user_id", "history_block", "attributes_block"}),
}


def variables(inp: ProfileInput) -> dict[str, str]:
    """The values of every placeholder of :data:`PROFILE_PROMPT`."""
    return {
        "data_note": DATA_BLOCKS_NOTE,
        "schema": schema_text(UserProfile),
        "user_id": inp.user_id,
        "history_block": data_block("HISTORY", "\n".join(f"- {t}" for t in inp.titles)),
        "attributes_block": data_block("TAGS", ", ".join(inp.attributes) or "(none)"),
    }


def render(inp: ProfileInput) -> list[BaseMessage]:
    """The chat messages asking for the user's initial memory."""
    return PROFILE_PROMPT.format_messages(**variables(inp))
