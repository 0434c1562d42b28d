"""Curation rules as data: a validated schema and a small interpreter. Model output is never code.

A rule set scores every candidate neighbour (user or item) of a user from cheap graph features:
``score = sum(weight * feature)`` over the rule set's feature weights for that neighbour type, then
each rule whose condition holds multiplies (or adds to) the score. The rules that fired are kept,
so a person can see why a neighbour was curated.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
from pydantic import BaseModel, Field, field_validator

NeighbourType = Literal["user", "item"]
Feature = Literal[
    "co_count",  # shared items (user nbr) / co-interactions with the user's items (item nbr)
    "co_share",  # co_count / the user's items (user nbr) / co_count per other own item (item nbr)
    "overlap",  # Jaccard overlap (user nbr) / mean item-item cosine to the history (item nbr)
    "degree",  # log(1 + interactions of the neighbour)
    "degree_share",  # interactions of the neighbour / the most of any neighbour of its kind
    "recency",  # exp(-days since the neighbour's last interaction / 180), 1 = as recent as the user
    "inactive_days",  # days between the neighbour's last interaction and the user's last one
    "text_overlap",  # cosine of attribute profiles (genres, categories, title words)
    "memory_sim",  # cosine of memory embeddings
]
FEATURES: tuple[str, ...] = Feature.__args__  # type: ignore[attr-defined]
Comparison = Literal[">", ">=", "<", "<=", "=="]
_OPS: dict[str, Callable[[Any, Any], Any]] = {  # floats or numpy arrays
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}


class FeatureWeight(BaseModel):
    """Linear weight of one feature in the base score of one neighbour type."""

    neighbour_type: NeighbourType
    feature: Feature
    weight: float = Field(ge=-10, le=10)


class Rule(BaseModel):
    """If ``feature comparison threshold`` holds for a neighbour, adjust its score."""

    name: str = Field(min_length=1, max_length=80, description="short human-readable name")
    neighbour_type: NeighbourType | Literal["any"] = "any"
    feature: Feature
    comparison: Comparison
    threshold: float
    effect: Literal["multiply", "add"] = "multiply"
    value: float = Field(ge=-10, le=10, description="multiplier or addend")

    def applies(self, neighbour_type: str, features: Mapping[str, float]) -> bool:
        """Whether the rule fires for a neighbour of this type with these features."""
        if self.neighbour_type not in ("any", neighbour_type):
            return False
        return _OPS[self.comparison](features.get(self.feature, 0.0), self.threshold)


class RuleSet(BaseModel):
    """A validated, saved rule set for one dataset."""

    name: str = "generated"
    source: Literal["generated", "generic"] = "generated"
    rationale: str = Field("", description="why these rules, in the author's words")
    weights: list[FeatureWeight] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list, max_length=32)

    @field_validator("weights")
    @classmethod
    def _one_weight_per_feature(cls, weights: list[FeatureWeight]) -> list[FeatureWeight]:
        seen: set[tuple[str, str]] = set()
        for w in weights:
            key = (w.neighbour_type, w.feature)
            if key in seen:
                raise ValueError(f"feature {w.feature!r} weighted twice for {w.neighbour_type}")
            seen.add(key)
        return weights

    def score(self, neighbour_type: str, features: Mapping[str, float]) -> tuple[float, list[str]]:
        """Score one neighbour; returns the score and the names of the rules that fired."""
        base = sum(
            w.weight * features.get(w.feature, 0.0)
            for w in self.weights
            if w.neighbour_type == neighbour_type
        )
        fired: list[str] = []
        for rule in self.rules:
            if rule.applies(neighbour_type, features):
                base = base * rule.value if rule.effect == "multiply" else base + rule.value
                fired.append(rule.name)
        return base, fired

    def score_many(
        self, neighbour_type: str, features: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, list[list[str]]]:
        """Vectorised ``score`` over many neighbours of one type (features as arrays)."""
        n = len(next(iter(features.values()))) if features else 0
        scores = np.zeros(n)
        for w in self.weights:
            if w.neighbour_type == neighbour_type and w.feature in features:
                scores += w.weight * np.asarray(features[w.feature], np.float64)
        masks: list[tuple[str, np.ndarray]] = []
        for rule in self.rules:
            if rule.neighbour_type not in ("any", neighbour_type):
                continue
            values = np.asarray(features.get(rule.feature, np.zeros(n)), np.float64)
            mask = _OPS[rule.comparison](values, rule.threshold)
            if rule.effect == "multiply":
                scores = np.where(mask, scores * rule.value, scores)
            else:
                scores = np.where(mask, scores + rule.value, scores)
            masks.append((rule.name, mask))
        return scores, FiredRules(n, masks)

    def save(self, path: Path) -> None:
        """Write the rule set as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> RuleSet:
        """Read and validate a saved rule set."""
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))


class FiredRules(Sequence[list[str]]):
    """Per neighbour, the names of the rules that fired, listed when read.

    Curation keeps the top k of a pool of hundreds: naming the rules of every pool member up
    front cost more than scoring them.
    """

    def __init__(self, n: int, masks: list[tuple[str, np.ndarray]]) -> None:
        self._n = n
        self._masks = masks

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> list[str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[list[str]]: ...

    def __getitem__(self, index: int | slice) -> list[str] | list[list[str]]:
        if isinstance(index, slice):
            return [self[j] for j in range(*index.indices(self._n))]
        if not -self._n <= index < self._n:
            raise IndexError(index)
        return [name for name, mask in self._masks if mask[index]]


def generic_rules() -> RuleSet:
    """The paper's generic hybrid heuristic (its ``hybrid_rule`` pruner), as a rule set.

    Items: 0.5 x recency + 0.3 x degree share; users: 0.7 x overlap share (shared items / the
    user's items) + 0.3 x degree share, then a type weight of 1.0 for items and 0.5 for users.
    The same fixed weights on every dataset, no thresholds: what generated rules are measured
    against. (The paper's optional candidate-aware item term needs the candidates, which curation
    does not see; it is left out.)
    """
    weights = [
        FeatureWeight(neighbour_type="item", feature="recency", weight=0.5),
        FeatureWeight(neighbour_type="item", feature="degree_share", weight=0.3),
        FeatureWeight(neighbour_type="user", feature="co_share", weight=0.7 * 0.5),
        FeatureWeight(neighbour_type="user", feature="degree_share", weight=0.3 * 0.5),
    ]
    return RuleSet(
        name="generic-hybrid",
        source="generic",
        rationale=(
            "The paper's generic heuristic: items by recency and popularity, users by the share "
            "of the user's items they share and their activity; items weigh twice users."
        ),
        weights=weights,
        rules=[],
    )


FeatureRanges = dict[str, dict[str, list[float]]]


class DomainStats(BaseModel):
    """Statistics of a dataset's train graph that the rules are written from."""

    dataset: str
    n_users: int
    n_items: int
    n_interactions: int
    density: float
    user_degree_median: float
    user_degree_p90: float
    item_degree_median: float
    item_degree_p90: float
    co_count_median: float = Field(description="median co-interaction count of co-occurring pairs")
    co_count_p90: float
    recency_spread_days: float = Field(description="median days between a user's first and last")
    has_clock: bool
    text_tokens_mean: float = Field(description="mean tokens of item text (text richness)")
    attributes_per_item: float
    feature_ranges: FeatureRanges = Field(
        default_factory=dict,
        description="neighbour type -> feature -> [p10, p50, p90] over a sample of users' "
        "candidate neighbours: where thresholds can sit",
    )
