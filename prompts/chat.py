"""Prompts of the chat graph: LMMem reads a message (JSON out), LLMRec writes the reply (prose)."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, data_block, json_lines, schema_text

UNDERSTAND_MARKER = "TASK: understand"
RESPOND_MARKER = "TASK: respond"

_UNDERSTAND_SYSTEM = (
    UNDERSTAND_MARKER + "\n"
    "You are LMMem, reading one message a user sent to a recommender chat. Extract: the intent "
    "(recommend, feedback, empty, other_language), the request in the user's words, constraints "
    "(include / exclude: attribute names copied from the ATTRIBUTES block; decades such as "
    "'1990s'; year bounds; 'older' / 'newer'), how many picks, feedback: titles the user has "
    "seen with a lasting sentiment (positive for loved / liked, negative for hated / did not "
    "like), skip: what to leave out of this conversation only ('not that one' is a skip, not a "
    "dislike), similar_to ('something like X'), exclude_shown ('something else / more'). Write "
    "'that' for the top pick shown last, '#2' for the second, 'these' for all of them. Never "
    "invent titles the message does not name.\n"
    "{data_note}\n"
    "Answer with one JSON object and nothing else, matching this JSON schema:\n{schema}"
)
_UNDERSTAND_HUMAN = (
    "Catalog attributes:\n{attributes_block}\n\n"
    "The message:\n{message_block}\n\n"
    "Return the reading of the message as JSON."
)
UNDERSTAND_PROMPT = ChatPromptTemplate.from_messages(
    [("system", _UNDERSTAND_SYSTEM), ("human", _UNDERSTAND_HUMAN)]
)

_RESPOND_SYSTEM = (
    RESPOND_MARKER + "\n"
    "You are LLMRec, the voice of a recommender chat. Write a short, friendly reply to the "
    "user's last message. Keep every fact of the DRAFT block (acknowledged feedback, questions, "
    "notes) and present the PICKS in their order with their titles and one-line reasons; do not "
    "add items that are not in PICKS. Plain text, no JSON.\n"
    "{data_note}"
)
_RESPOND_HUMAN = (
    "The conversation so far (oldest first):\n{conversation_block}\n\n"
    "Picks, best first (title, rationale):\n{picks_block}\n\n"
    "A draft reply with the facts to keep:\n{draft_block}\n\n"
    "Write the reply."
)
RESPOND_PROMPT = ChatPromptTemplate.from_messages(
    [("system", _RESPOND_SYSTEM), ("human", _RESPOND_HUMAN)]
)

PLACEHOLDERS: dict[str, frozenset[str]] = {
    "UNDERSTAND_PROMPT": frozenset({"data_note", "schema", "attributes_block", "message_block"}),
    "RESPOND_PROMPT": frozenset({"data_note", "conversation_block", "picks_block", "draft_block"}),
}


def understand_messages(message: str, attributes: Sequence[str], schema: type) -> list[BaseMessage]:
    """The LMMem prompt that reads one user message into ``schema``."""
    return UNDERSTAND_PROMPT.format_messages(
        data_note=DATA_BLOCKS_NOTE,
        schema=schema_text(schema),
        attributes_block=data_block("ATTRIBUTES", ", ".join(attributes) or "(none)"),
        message_block=data_block("MESSAGE", message),
    )


def respond_messages(
    conversation: Sequence[tuple[str, str]], picks: Sequence[dict[str, object]], draft: str
) -> list[BaseMessage]:
    """The LLMRec prompt that writes the chat reply from the picks and the draft."""
    lines = "\n".join(f"{role}: {text}" for role, text in conversation) or "(none)"
    return RESPOND_PROMPT.format_messages(
        data_note=DATA_BLOCKS_NOTE,
        conversation_block=data_block("CONVERSATION", lines),
        picks_block=data_block("PICKS", json_lines(picks)),
        draft_block=data_block("DRAFT", draft),
    )
