"""Prompt for LMMem's rule generation: domain statistics in, a curation RuleSet (JSON) out."""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, data_block, schema_text
from schemas.ruleset import FEATURES, Comparison, DomainStats, RuleSet

TASK_MARKER = "TASK: rules"

FEATURE_DESCRIPTIONS: dict[str, str] = {
    "co_count": "shared items (user neighbour) / co-interactions with the user's items (item)",
    "overlap": "Jaccard overlap (user neighbour) / mean item-item cosine to the history (item)",
    "degree": "log(1 + interactions of the neighbour)",
    "recency": "exp(-days since the neighbour's last interaction / 180); 1 = as recent as the user",
    "inactive_days": "days between the neighbour's last interaction and the user's last one",
    "text_overlap": "cosine of attribute profiles (genres, categories, title words)",
    "memory_sim": "cosine of memory embeddings",
}
COMPARISONS: tuple[str, ...] = Comparison.__args__  # type: ignore[attr-defined]

_SYSTEM = (
    TASK_MARKER + "\n"
    "You are LMMem, the memory manager of a collaborative recommender. Write the curation rules "
    "that choose which collaborative neighbours (users and items) of a user matter in the domain "
    "described by the statistics below.\n"
    "A neighbour's score is sum(weight * feature) over the weights for its type; then each rule "
    "whose condition 'feature comparison threshold' holds multiplies the score by its value "
    "(effect 'multiply') or adds its value (effect 'add').\n"
    "Use ONLY these features:\n{features}\n"
    "Use ONLY these comparisons: {comparisons}.\n"
    "neighbour_type is 'user' or 'item' for weights, and 'user', 'item' or 'any' for rules. "
    "Give at most one weight per (neighbour_type, feature), weights and values within [-10, 10], "
    "at most 32 rules, rule names under 80 characters, and a one-paragraph rationale tied to the "
    "statistics.\n"
    "{data_note}\n"
    "Answer with one JSON object and nothing else, matching this JSON schema:\n{schema}"
)
_HUMAN = "Domain statistics of dataset {dataset}:\n{stats_block}\n\nReturn the rule set as JSON."

RULES_PROMPT = ChatPromptTemplate.from_messages([("system", _SYSTEM), ("human", _HUMAN)])
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "RULES_PROMPT": frozenset(
        {"features", "comparisons", "data_note", "schema", "dataset", "stats_block"}
    ),
}


def variables(stats: DomainStats) -> dict[str, str]:
    """The values of every placeholder of :data:`RULES_PROMPT`."""
    features = "\n".join(f"- {name}: {FEATURE_DESCRIPTIONS[name]}" for name in FEATURES)
    return {
        "features": features,
        "comparisons": ", ".join(COMPARISONS),
        "data_note": DATA_BLOCKS_NOTE,
        "schema": schema_text(RuleSet),
        "dataset": stats.dataset,
        "stats_block": data_block("DOMAIN_STATS", stats.model_dump_json(indent=1)),
    }


def render(stats: DomainStats) -> list[BaseMessage]:
    """The chat messages asking for a rule set for these statistics."""
    return RULES_PROMPT.format_messages(**variables(stats))
