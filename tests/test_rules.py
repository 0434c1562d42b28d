"""Rule sets are validated data applied by a small interpreter; model output is never code."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from roles.offline_rules import offline_rules
from schemas.ruleset import DomainStats, FeatureWeight, Rule, RuleSet, generic_rules

STATS = DomainStats(
    dataset="x",
    n_users=100,
    n_items=50,
    n_interactions=900,
    density=0.18,
    user_degree_median=8,
    user_degree_p90=150,
    item_degree_median=12,
    item_degree_p90=40,
    co_count_median=2,
    co_count_p90=6,
    recency_spread_days=400,
    has_clock=True,
    text_tokens_mean=12,
    attributes_per_item=2.0,
)


def _rules() -> RuleSet:
    return RuleSet(
        weights=[
            FeatureWeight(neighbour_type="user", feature="overlap", weight=2.0),
            FeatureWeight(neighbour_type="item", feature="recency", weight=1.0),
        ],
        rules=[
            Rule(
                name="strong",
                neighbour_type="user",
                feature="co_count",
                comparison=">",
                threshold=3,
                value=2.0,
            ),
            Rule(
                name="stale",
                feature="inactive_days",
                comparison=">=",
                threshold=180,
                effect="add",
                value=-0.5,
            ),
        ],
    )


def test_interpreter_scores_and_reports_fired_rules() -> None:
    rules = _rules()
    score, fired = rules.score("user", {"overlap": 0.5, "co_count": 5, "inactive_days": 200})
    assert score == pytest.approx((2.0 * 0.5) * 2.0 - 0.5)
    assert fired == ["strong", "stale"]
    score, fired = rules.score("item", {"recency": 0.25, "co_count": 5})
    assert score == pytest.approx(0.25) and fired == []


def test_vectorised_scores_match_the_scalar_interpreter() -> None:
    rules = _rules()
    feats = {
        "overlap": np.array([0.1, 0.5, 0.9]),
        "co_count": np.array([1.0, 4.0, 9.0]),
        "inactive_days": np.array([0.0, 300.0, 10.0]),
    }
    scores, fired = rules.score_many("user", feats)
    for j in range(3):
        s, f = rules.score("user", {k: float(v[j]) for k, v in feats.items()})
        assert scores[j] == pytest.approx(s) and fired[j] == f


@pytest.mark.parametrize(
    "bad",
    [
        {
            "feature": "__import__('os').system('x')",
            "comparison": ">",
            "threshold": 1,
            "name": "x",
            "value": 1,
        },
        {"feature": "co_count", "comparison": "lambda", "threshold": 1, "name": "x", "value": 1},
        {
            "feature": "co_count",
            "comparison": ">",
            "threshold": "1; rm -rf /",
            "name": "x",
            "value": 1,
        },
        {"feature": "co_count", "comparison": ">", "threshold": 1, "name": "x", "value": 1e9},
    ],
)
def test_rules_that_are_not_data_are_rejected(bad: dict) -> None:
    payload = {
        "weights": [{"neighbour_type": "user", "feature": "overlap", "weight": 1}],
        "rules": [bad],
    }
    with pytest.raises(ValidationError):
        RuleSet.model_validate(payload)


def test_duplicate_weights_and_empty_weights_are_rejected() -> None:
    w = {"neighbour_type": "user", "feature": "overlap", "weight": 1}
    with pytest.raises(ValidationError, match="weighted twice"):
        RuleSet.model_validate({"weights": [w, w]})
    with pytest.raises(ValidationError):
        RuleSet.model_validate({"weights": []})


def test_save_and_load_roundtrip(tmp_path) -> None:
    rules = _rules()
    rules.save(tmp_path / "r.json")
    assert RuleSet.load(tmp_path / "r.json") == rules
    assert json.loads((tmp_path / "r.json").read_text())["rules"][0]["name"] == "strong"


def test_offline_rules_follow_the_statistics() -> None:
    rules = offline_rules(STATS)
    names = [r.name for r in rules.rules]
    assert any("inactive" in n for n in names)  # a clock with a long spread: decay stale users
    assert any("hub" in n for n in names)  # p90 degree 150: damp hubs
    no_clock = offline_rules(STATS.model_copy(update={"has_clock": False, "user_degree_p90": 20}))
    assert not any("inactive" in r.name or "hub" in r.name for r in no_clock.rules)
    assert offline_rules(STATS) == rules  # deterministic


def test_generic_rules_are_the_papers_hybrid_heuristic() -> None:
    rules = generic_rules()
    assert rules.source == "generic" and rules.rules == []
    user = {w.feature: w.weight for w in rules.weights if w.neighbour_type == "user"}
    item = {w.feature: w.weight for w in rules.weights if w.neighbour_type == "item"}
    assert item == {"recency": 0.5, "degree_share": 0.3}
    assert user == {"co_share": 0.35, "degree_share": 0.15}  # (0.7, 0.3) x user weight 0.5
    # a user sharing half of the user's items, twice as active as another, scores as the paper's
    score, _ = rules.score("user", {"co_share": 0.5, "degree_share": 0.2})
    assert score == pytest.approx(0.5 * (0.7 * 0.5 + 0.3 * 0.2))
