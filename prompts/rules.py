"""Prompt for LMMem's rule generation: domain statistics in, a curation RuleSet (JSON) out."""

from __future__ import annotations

from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from prompts.blocks import DATA_BLOCKS_NOTE, data_block, schema_text
from schemas.ruleset import FEATURES, Comparison, DomainStats, RuleSet

TASK_MARKER = "TASK: rules"

FEATURE_DESCRIPTIONS: dict[str, str] = {
    "co_count": "shared items (user neighbour) / co-interactions with the user's items (item)",
    "co_share": "co_count / the user's own item count (user) / co_count per other own item (item)",
    "overlap": "Jaccard overlap (user neighbour) / mean item-item cosine to the history (item)",
    "degree": "log(1 + interactions of the neighbour)",
    "degree_share": "interactions of the neighbour / the most any user (item) has, 0 to 1",
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
    "Where each feature's values lie, over every candidate neighbour of a sample of users "
    "(p10 / p50 / p90 by neighbour type): put thresholds where they split these ranges, and "
    "size weights by them:\n{ranges}\n"
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
        {"features", "ranges", "comparisons", "data_note", "schema", "dataset", "stats_block"}
    ),
}


def variables(stats: DomainStats) -> dict[str, str]:
    """The values of every placeholder of :data:`RULES_PROMPT`."""
    features = "\n".join(f"- {name}: {FEATURE_DESCRIPTIONS[name]}" for name in FEATURES)
    return {
        "features": features,
        "ranges": feature_ranges_table(stats),
        "comparisons": ", ".join(COMPARISONS),
        "data_note": DATA_BLOCKS_NOTE,
        "schema": schema_text(RuleSet),
        "dataset": stats.dataset,
        "stats_block": data_block(
            "DOMAIN_STATS", stats.model_dump_json(indent=1, exclude={"feature_ranges"})
        ),
    }


def feature_ranges_table(stats: DomainStats) -> str:
    """The p10 / p50 / p90 of every feature by neighbour type, one line per feature."""
    if not stats.feature_ranges:
        return "(not measured for this dataset)"
    lines = ["feature: user neighbours p10 / p50 / p90 | item neighbours p10 / p50 / p90"]
    for name in FEATURES:
        cells = []
        for kind in ("user", "item"):
            values = stats.feature_ranges.get(kind, {}).get(name)
            cells.append(" / ".join(f"{v:g}" for v in values) if values else "n/a")
        lines.append(f"- {name}: {cells[0]} | {cells[1]}")
    return "\n".join(lines)


def render(stats: DomainStats) -> list[BaseMessage]:
    """The chat messages asking for a rule set for these statistics."""
    return RULES_PROMPT.format_messages(**variables(stats))
