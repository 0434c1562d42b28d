import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from dataio.ties import rank_candidates, target_ranks
from evaluation.baselines import (
    ALS,
    BASELINES,
    BPR,
    GRIDS,
    Baseline,
    ItemKNN,
    MostPop,
    Random,
    TunedBaseline,
    item_cosine,
    make_baseline,
    tune,
)

N_PER_CLUSTER = 60
ITEMS_PER_CLUSTER = 30


def _clustered():
    """Two user clusters, each interacting with 8 of its own cluster's 30 items."""
    rng = np.random.default_rng(0)
    rows, cols = [], []
    for user in range(2 * N_PER_CLUSTER):
        offset = 0 if user < N_PER_CLUSTER else ITEMS_PER_CLUSTER
        items = rng.choice(ITEMS_PER_CLUSTER, size=8, replace=False) + offset
        rows += [user] * len(items)
        cols += items.tolist()
    shape = (2 * N_PER_CLUSTER, 2 * ITEMS_PER_CLUSTER)
    train = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    # For each user: an unseen in-cluster item and an out-of-cluster item.
    pairs = []
    for user in range(shape[0]):
        seen = set(train[user].indices)
        own = 0 if user < N_PER_CLUSTER else ITEMS_PER_CLUSTER
        other = ITEMS_PER_CLUSTER - own
        inside = next(i for i in rng.permutation(ITEMS_PER_CLUSTER) + own if i not in seen)
        outside = int(rng.integers(ITEMS_PER_CLUSTER)) + other
        pairs.append((inside, outside))
    return train, np.array(pairs)


@pytest.fixture(scope="module")
def clustered():
    return _clustered()


def test_every_baseline_follows_the_protocol():
    for name in BASELINES:
        assert isinstance(make_baseline(name), Baseline)
        assert make_baseline(name).name == name
        assert name in GRIDS and GRIDS[name]


def test_make_baseline_rejects_unknown_name_and_params():
    with pytest.raises(ValueError, match="expected one of"):
        make_baseline("lightgcn")
    with pytest.raises(ValueError, match="accepted"):
        make_baseline("itemknn", neighbours=5)


def test_scoring_before_fit_and_out_of_range_ids_fail_clearly(clustered):
    train, _ = clustered
    model = MostPop()
    with pytest.raises(RuntimeError, match="fit"):
        model.score(0, np.array([1, 2]))
    model.fit(train)
    with pytest.raises(ValueError, match="user codes"):
        model.score(500, np.array([1]))
    with pytest.raises(ValueError, match="item codes"):
        model.score(0, np.array([999]))
    with pytest.raises(TypeError, match="scipy.sparse"):
        model.fit(np.ones((3, 3)))


def test_mostpop_ranks_most_popular_candidate_first():
    # Item popularity: item 2 -> 3 users, item 0 -> 2, item 1 -> 1, item 3 -> 0.
    dense = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    model = MostPop()
    model.fit(sp.csr_matrix(dense))
    cands = np.array([[3, 0, 2, 1], [1, 3, 0, 2]])
    users = np.array([0, 3])
    ranked = rank_candidates(model.score_many(users, cands), users, cands)
    np.testing.assert_array_equal(ranked, [[2, 0, 1, 3], [2, 0, 1, 3]])
    np.testing.assert_allclose(model.score(1, np.array([0, 1, 2, 3])), [2, 1, 3, 0])


def test_random_is_deterministic_per_seed_and_independent_of_candidate_order(clustered):
    train, _ = clustered
    a, b, c = Random(seed=1), Random(seed=1), Random(seed=2)
    for model in (a, b, c):
        model.fit(train)
    items = np.arange(20)
    np.testing.assert_array_equal(a.score(3, items), b.score(3, items))
    np.testing.assert_array_equal(a.score(3, items[::-1]), a.score(3, items)[::-1])
    assert not np.array_equal(a.score(3, items), c.score(3, items))
    assert not np.array_equal(a.score(3, items), a.score(4, items))
    scores = a.score_many(np.arange(100), np.tile(np.arange(10), (100, 1)))
    assert scores.min() >= 0 and scores.max() < 1
    # Roughly uniform first place over 10 candidates.
    first = np.bincount(scores.argmax(axis=1), minlength=10)
    assert first.max() < 25


def test_item_cosine_hand_computed():
    # Items 0 and 1 share 1 of (2, 1) users: cos = 1 / sqrt(2 * 1); items 0 and 2 share 1 of (2, 1).
    dense = np.array([[1, 1, 0], [1, 0, 1]])
    sim = item_cosine(sp.csr_matrix(dense), k=5).toarray()
    expected = np.array([[0, 1 / np.sqrt(2), 1 / np.sqrt(2)], [1 / np.sqrt(2), 0, 0]])
    np.testing.assert_allclose(sim[:2], expected)
    shrunk = item_cosine(sp.csr_matrix(dense), k=5, shrink=10.0).toarray()
    assert shrunk[0, 1] == pytest.approx(1 / (np.sqrt(2) + 10))
    top1 = item_cosine(sp.csr_matrix(dense), k=1).toarray()
    assert np.count_nonzero(top1[0]) == 1


def test_itemknn_score_is_sum_of_similarities_to_user_items():
    dense = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1]])
    model = ItemKNN(k=10)
    model.fit(sp.csr_matrix(dense))
    sim = item_cosine(sp.csr_matrix(dense), k=10).toarray()
    np.testing.assert_allclose(model.score(0, np.array([2, 3])), sim[[2, 3]][:, [0, 1]].sum(axis=1))


@pytest.mark.parametrize(
    "model",
    [
        ItemKNN(k=20),
        ALS(factors=4, regularization=0.1, alpha=5.0, iterations=15),
        BPR(factors=16, learning_rate=0.05, iterations=100),
    ],
    ids=["itemknn", "als", "bpr"],
)
def test_collaborative_baselines_prefer_in_cluster_items(clustered, model):
    train, pairs = clustered
    model.fit(train)
    users = np.arange(train.shape[0])
    scores = model.score_many(users, pairs)
    assert np.mean(scores[:, 0] > scores[:, 1]) > 0.9
    np.testing.assert_allclose(model.score(5, pairs[5]), scores[5])


@pytest.mark.parametrize("cls", [BPR, ALS])
def test_factor_models_are_deterministic_for_a_seed(clustered, cls):
    train, pairs = clustered
    first, second = cls(factors=8, iterations=5, seed=3), cls(factors=8, iterations=5, seed=3)
    first.fit(train)
    second.fit(train)
    users = np.arange(train.shape[0])
    np.testing.assert_array_equal(first.score_many(users, pairs), second.score_many(users, pairs))


def test_ties_follow_the_one_rule_not_the_position():
    scores = np.zeros((2000, 2))
    items = np.tile([7, 8], (2000, 1))
    users = np.arange(2000)
    ranked = rank_candidates(scores, users, items)
    assert 0.45 < np.mean(ranked[:, 0] == 7) < 0.55
    np.testing.assert_array_equal(ranked, rank_candidates(scores, users, items[:, ::-1]))
    ranks = target_ranks(np.array([[0.1, 0.9, 0.5]]), [0], np.array([[4, 5, 6]]), np.array([4]))
    assert ranks.tolist() == [3]
    assert target_ranks(np.array([[0.1, 0.9]]), [0], np.array([[4, 5]]), [9]).tolist() == [0]


@pytest.mark.parametrize("name", BASELINES)
def test_tune_returns_a_grid_point_and_valid_metrics(clustered, name):
    train, pairs = clustered
    rng = np.random.default_rng(1)
    # Validation: the unseen in-cluster item is the target, shuffled among 3 out-of-cluster items.
    users = np.arange(train.shape[0])
    other = np.where(users < N_PER_CLUSTER, ITEMS_PER_CLUSTER, 0)
    negatives = [rng.choice(ITEMS_PER_CLUSTER, size=3, replace=False) + o for o in other]
    cands = rng.permuted(np.column_stack([pairs[:, 0], np.array(negatives)]), axis=1)
    tuned = tune(name, train, users, cands, pairs[:, 0], seed=0)
    assert isinstance(tuned, TunedBaseline)
    assert tuned.name == name
    assert tuned.params in GRIDS[name]
    assert 0.0 <= tuned.valid_h1 <= 1.0
    assert tuned.valid_h1 <= tuned.valid_mrr <= 1.0
    assert len(tuned.trials) == len(GRIDS[name])
    assert tuned.valid_h1 == max(t.valid_h1 for t in tuned.trials)
    if name in ("itemknn", "als", "bpr"):
        # 4 candidates: random H@1 is 0.25; large factor counts overfit this tiny matrix a bit.
        assert tuned.valid_h1 > 0.6
    if name == "random":
        assert tuned.valid_h1 < 0.45


def test_tune_accepts_a_custom_grid_and_picks_the_best_point(clustered):
    train, pairs = clustered
    users = np.arange(train.shape[0])
    grid = [{"k": 1, "shrink": 1000.0}, {"k": 20, "shrink": 0.0}]
    tuned = tune("itemknn", train, users, pairs, pairs[:, 0], grid=grid)
    assert tuned.params == {"k": 20, "shrink": 0.0}
    assert tuned.valid_h1 > 0.9
    assert [t.params for t in tuned.trials] == grid
    with pytest.raises(ValueError, match="grid is empty"):
        tune("itemknn", train, users, pairs, pairs[:, 0], grid=[])
    with pytest.raises(ValueError, match="expected one of"):
        tune("sasrec", train, users, pairs, pairs[:, 0])


def _data_dir() -> Path:
    env = os.environ.get("MEMREC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _ml100k_leave_one_out():
    """Train matrix, users, 10 candidates (target + 9 unseen, rng seed 0) and test targets."""
    path = _data_dir() / "ml-100k" / "u.data"
    if not path.exists():
        pytest.skip(f"ml-100k not found at {path}")
    df = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "ts"])
    df["user"] -= 1
    df["item"] -= 1
    df = df.sort_values(["user", "ts"], kind="stable")
    is_last = ~df["user"].duplicated(keep="last")
    n_users, n_items = df["user"].max() + 1, df["item"].max() + 1
    train_df = df[~is_last]
    train = sp.csr_matrix(
        (np.ones(len(train_df)), (train_df["user"], train_df["item"])), shape=(n_users, n_items)
    )
    targets = df[is_last].set_index("user")["item"].reindex(range(n_users)).to_numpy()
    seen = df.groupby("user")["item"].apply(set)
    rng = np.random.default_rng(0)
    cands = []
    for user in range(n_users):
        unseen = np.setdiff1d(np.arange(n_items), list(seen[user]))
        row = np.append(rng.choice(unseen, size=9, replace=False), targets[user])
        cands.append(rng.permutation(row))
    return train, np.arange(n_users), np.array(cands), targets


@pytest.mark.slow  # reads the benchmark data (skipped without it)
def test_ml100k_leave_one_out_mostpop_and_itemknn_beat_random():
    train, users, cands, targets = _ml100k_leave_one_out()
    h1 = {}
    for name, model in {
        "random": Random(0),
        "mostpop": MostPop(),
        "itemknn": ItemKNN(k=100),
    }.items():
        model.fit(train)
        ranks = target_ranks(model.score_many(users, cands), users, cands, targets)
        assert ranks.min() >= 1  # the target is always a candidate
        h1[name] = float(np.mean(ranks == 1))
    assert h1["random"] < 0.15
    assert h1["mostpop"] > 0.25
    assert h1["itemknn"] > 0.25
