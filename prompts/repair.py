"""The one repair prompt sent after a malformed reply: what was wrong and the schema again."""

from __future__ import annotations

from langchain_core.messages import HumanMessage
from langchain_core.prompts import PromptTemplate
from pydantic import BaseModel

from prompts.blocks import schema_text

REPAIR_MARKER = "REPAIR:"
ERROR_MAX_CHARS = 1500

REPAIR_PROMPT = PromptTemplate.from_template(
    REPAIR_MARKER + " your previous answer could not be used: {error}\n"
    "Answer again with one JSON object and nothing else (no prose, no code fences), "
    "matching this JSON schema:\n{schema}"
)
PLACEHOLDERS: dict[str, frozenset[str]] = {"REPAIR_PROMPT": frozenset({"error", "schema"})}


def variables(error: str, schema: type[BaseModel]) -> dict[str, str]:
    """The values of every placeholder of :data:`REPAIR_PROMPT`."""
    return {"error": error[:ERROR_MAX_CHARS], "schema": schema_text(schema)}


def render(error: str, schema: type[BaseModel]) -> HumanMessage:
    """The user message asking the model to fix its previous answer."""
    return HumanMessage(content=REPAIR_PROMPT.format(**variables(error, schema)))
