"""The offline rule writer: a curation rule set from domain statistics, without a model.

It reads the same statistics the rules prompt shows an LLM (``prompts/rules.py``) and answers in
the same validated schema (``schemas/ruleset.py``): feature weights per neighbour type, then a few
threshold rules (strong co-interaction, central items, inactive users, hub users).
"""

from __future__ import annotations

import numpy as np

from schemas.ruleset import DomainStats, FeatureWeight, Rule, RuleSet


def offline_rules(stats: DomainStats) -> RuleSet:
    """Write a curation rule set from domain statistics, the way the rules prompt asks an LLM to."""
    sparse = stats.density < 0.01 or stats.user_degree_median < 10
    rich_text = stats.attributes_per_item >= 1.5
    return RuleSet(
        name=f"offline-{stats.dataset}",
        source="generated",
        rationale=(
            f"density {stats.density:.4f}, median user degree {stats.user_degree_median:g}; "
            f"{'sparse: lean on recent own items' if sparse else 'dense: lean on user overlap'}; "
            f"{'attribute-rich' if rich_text else 'text-poor'} catalogue."
        ),
        weights=_weights(stats, sparse=sparse, rich_text=rich_text),
        rules=_rules(stats),
    )


def _weights(stats: DomainStats, *, sparse: bool, rich_text: bool) -> list[FeatureWeight]:
    w_user = {
        "overlap": 2.0,
        "text_overlap": 0.6 if rich_text else 0.2,
        "memory_sim": 0.4,
        "recency": 0.3 if stats.has_clock else 0.0,
    }
    w_item = {
        "overlap": 1.0 if not sparse else 0.5,
        "recency": 1.2,
        "text_overlap": 0.6 if rich_text else 0.2,
        "memory_sim": 0.3,
    }
    return [
        FeatureWeight(neighbour_type=t, feature=f, weight=w)  # type: ignore[arg-type]
        for t, table in (("user", w_user), ("item", w_item))
        for f, w in table.items()
        if w
    ]


def _rules(stats: DomainStats) -> list[Rule]:
    strong_co = max(3.0, round(stats.co_count_p90))
    rules = [
        Rule(
            name=f"users sharing >= {strong_co:g} items first",
            neighbour_type="user",
            feature="co_count",
            comparison=">=",
            threshold=strong_co,
            value=1.5,
        ),
        Rule(
            name="items central to the history first",
            neighbour_type="item",
            feature="co_count",
            comparison=">=",
            threshold=max(3.0, round(stats.co_count_median)),
            value=1.2,
        ),
    ]
    if stats.has_clock and stats.recency_spread_days > 30:
        rules.append(
            Rule(
                name="decay users inactive > 180 days",
                neighbour_type="user",
                feature="inactive_days",
                comparison=">",
                threshold=180,
                value=0.6,
            )
        )
    if stats.user_degree_p90 > 100:
        rules.append(
            Rule(
                name="damp hub users",
                neighbour_type="user",
                feature="degree",
                comparison=">",
                threshold=float(np.log1p(stats.user_degree_p90)),
                value=0.8,
            )
        )
    return rules
