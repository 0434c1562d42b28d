"""Strong baselines: EASE's closed form, tuning on validation only, the protocol's warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from dataio.candidates import candidates_path, read_candidates
from evaluation.strong import default_grid, ease_matrix, ease_sweep, run_strong, split_sequences
from memory_store.sequences import as_ragged
from tests.support.fixtures import ML100K, TINY_MOVIES, base_workspace, has_data, no_data_reason


def test_ease_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((30, 8)) < 0.4).astype(np.float64)
    lam = 3.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(8))
    b = np.eye(8) - p / np.diag(p)
    assert ease_matrix(sp.csr_matrix(x), lam) == pytest.approx(b, abs=1e-4)
    seqs = as_ragged([np.flatnonzero(r).tolist() for r in x], 8)
    ((_, scores),) = list(ease_sweep(seqs, np.array([0]), np.array([[1, 2]]), [{"lam": lam}]))
    assert scores[0] == pytest.approx((x[0] @ b)[[1, 2]], abs=1e-4)


def test_warm_up_appends_exactly_the_evaluated_users_validation_items() -> None:
    ws = base_workspace(TINY_MOVIES)
    users = sorted(ws.split.test["user"].tolist())[:5]
    train, warm = (
        split_sequences(ws.dataset, ws.split),
        split_sequences(ws.dataset, ws.split, users),
    )
    valid = dict(zip(ws.split.valid["user"].tolist(), ws.split.valid["item"].tolist(), strict=True))
    for u in range(ws.dataset.n_users):
        extra = [valid[u]] if u in users else []
        assert warm.history(u).tolist() == train.history(u).tolist() + extra


@pytest.mark.parametrize("name", ["recency-knn", "transition", "ease"])
def test_tuned_on_validation_and_scored_on_the_test_candidates(name: str) -> None:
    ws = base_workspace(TINY_MOVIES)
    valid = read_candidates(candidates_path(ws.directory, "valid", 10, 0), ws.dataset)
    test = read_candidates(candidates_path(ws.directory, "test", 10, 0), ws.dataset)
    users = sorted(ws.split.test["user"].tolist())
    run, extra = run_strong(name, ws.dataset, ws.split, valid, test, users)
    assert run.params in default_grid(name, ws.dataset.n_items)
    assert extra["grid_points"] == len(default_grid(name, ws.dataset.n_items))
    assert set(run.ranks) == set(users) and all(1 <= r <= 10 for r in run.ranks.values())
    assert 0 <= run.valid_h1 <= run.valid_mrr <= 1


@pytest.mark.slow  # tunes on the full ml-100k validation split
@pytest.mark.skipif(not has_data(ML100K), reason=no_data_reason(ML100K))
def test_ml100k_strong_baselines_and_the_index_time_ranker_on_validation() -> None:
    """The figures of the issue's research: the ranker beats every strong baseline on validation."""
    from memory_store.ranker_index import RankerConfig

    ws = base_workspace(ML100K)
    valid = read_candidates(candidates_path(ws.directory, "valid", 10, 0), ws.dataset)
    test = read_candidates(candidates_path(ws.directory, "test", 10, 0), ws.dataset)
    users = sorted(ws.split.test["user"].tolist())
    best = {}
    for name in ("recency-knn", "transition"):
        run, _ = run_strong(name, ws.dataset, ws.split, valid, test, users)
        best[name] = run.valid_h1
        assert np.mean([r == 1 for r in run.ranks.values()]) > 0.58  # far above ItemKNN's 0.51
    assert best["recency-knn"] == pytest.approx(0.6511, abs=1e-4)
    assert best["transition"] == pytest.approx(0.6628, abs=1e-4)
    ranker = RankerConfig.load(ws.directory)
    assert ranker.tuned and ranker.report["valid_h1"] > max(best.values())
