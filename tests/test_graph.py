"""The interaction graph: appends behave exactly like a rebuild, persistence round-trips."""

import numpy as np
import pandas as pd
import pytest

from memory_store.features import item_neighbour_features, user_neighbour_features
from memory_store.graph import InteractionGraph

ATTRS = [["a"], ["a", "b"], ["b"], ["c"], ["a", "c"], []]


def _frame(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "ts"])


BASE = [(0, 0, 1), (0, 1, 2), (1, 1, 1), (1, 2, 5), (2, 0, 3), (2, 3, 4), (3, 4, 1), (3, 1, 9)]
EXTRA = [(0, 2, 10.0), (3, 0, 11.0), (2, 5, 12.0)]


def _graphs() -> tuple[InteractionGraph, InteractionGraph]:
    appended = InteractionGraph.build(_frame(BASE), 4, 6, ATTRS)
    for u, i, t in EXTRA:
        assert appended.append(u, i, t)
    rebuilt = InteractionGraph.build(_frame(BASE + EXTRA), 4, 6, ATTRS)
    return appended, rebuilt


def test_append_matches_a_full_rebuild() -> None:
    appended, rebuilt = _graphs()
    items = np.arange(6)
    for u in range(4):
        assert sorted(appended.user_items(u)) == sorted(rebuilt.user_items(u))
        a_items, a_ts = appended.user_item_times(u)
        r_items, r_ts = rebuilt.user_item_times(u)
        assert list(a_items) == list(r_items) and np.allclose(a_ts, r_ts)
    for i in range(6):
        assert sorted(appended.item_users(i)) == sorted(rebuilt.item_users(i))
    assert np.allclose(appended.co_counts(items), rebuilt.co_counts(items))
    assert np.allclose(
        appended.shared_counts(np.array([0, 1])), rebuilt.shared_counts(np.array([0, 1]))
    )
    assert np.allclose(appended.user_degree, rebuilt.user_degree)
    assert np.allclose(appended.item_degree, rebuilt.item_degree)
    assert np.allclose(appended.user_last_ts, rebuilt.user_last_ts)
    assert np.allclose(
        appended.votes(np.array([0, 3]), np.array([1.0, 0.5]), items),
        rebuilt.votes(np.array([0, 3]), np.array([1.0, 0.5]), items),
    )
    assert np.allclose(appended.user_profiles(np.arange(4)), rebuilt.user_profiles(np.arange(4)))
    some = np.array([2, 0, 5, 1])
    for g in (appended, rebuilt):
        co, cos = g.co_within(some)
        assert np.allclose(co, g.co_counts(some)[some])
        assert np.allclose(cos, g.item_cosine(some)[some])
    assert np.allclose(appended.co_within(some)[1], rebuilt.co_within(some)[1])
    unit = np.array([0.6, 0.0, 0.8])
    users = np.array([3, 0, 2, 1, 0])  # appended users, one without appends, one repeated
    assert np.allclose(appended.profile_cosines(users, unit), rebuilt.profile_cosines(users, unit))
    assert appended.n_interactions == rebuilt.n_interactions == len(BASE) + len(EXTRA)


def test_features_after_append_match_a_rebuild() -> None:
    appended, rebuilt = _graphs()
    for u in range(4):
        a, r = user_neighbour_features(appended, u), user_neighbour_features(rebuilt, u)
        assert list(a.codes) == list(r.codes)
        for name in a.features:
            assert np.allclose(a.features[name], r.features[name]), name
        a, r = item_neighbour_features(appended, u), item_neighbour_features(rebuilt, u)
        for name in a.features:
            assert np.allclose(a.features[name], r.features[name]), name


def test_append_is_incremental_and_compaction_keeps_results() -> None:
    graph = InteractionGraph.build(_frame(BASE), 4, 6, ATTRS)
    graph.append(0, 2, 10.0)
    assert graph._n_delta == 1  # kept in the delta, not merged into the base matrices
    before = graph.co_counts(np.arange(6)).copy()
    graph.compact()
    assert graph._n_delta == 0
    assert np.allclose(graph.co_counts(np.arange(6)), before)


def test_duplicate_append_is_ignored() -> None:
    graph = InteractionGraph.build(_frame(BASE), 4, 6, ATTRS)
    assert not graph.append(0, 0, 20.0)
    assert graph.user_degree[0] == 2


def test_save_load_roundtrip(tmp_path) -> None:
    appended, _ = _graphs()
    appended.save(tmp_path / "g")
    loaded = InteractionGraph.load(tmp_path / "g")
    assert np.allclose(loaded.co_counts(np.arange(6)), appended.co_counts(np.arange(6)))
    assert loaded.attribute_names == appended.attribute_names
    assert (loaded.similar != appended.similar).nnz == 0


def test_shared_counts_and_cosine_by_hand() -> None:
    graph = InteractionGraph.build(_frame(BASE), 4, 6, ATTRS)
    # users having items 0 or 1: user0 has both, user1 has 1, user2 has 0, user3 has 1
    assert list(graph.shared_counts(np.array([0, 1]))) == [2, 1, 1, 1]
    # item 1 is co-chosen with item 0 by user 0 only: cos = 1 / sqrt(2 * 3)
    assert np.isclose(graph.item_cosine(np.array([0]))[1], 1 / np.sqrt(2 * 3))


def test_remove_user_matches_a_rebuild_without_them() -> None:
    appended, _ = _graphs()
    removed = appended.remove_user(0)
    assert removed == 3  # two train items and one appended
    rows = [r for r in BASE + EXTRA if r[0] != 0]
    rebuilt = InteractionGraph.build(_frame(rows), 4, 6, ATTRS)
    items = np.arange(6)
    assert len(appended.user_items(0)) == 0
    assert np.allclose(appended.co_counts(items), rebuilt.co_counts(items))
    assert np.allclose(appended.item_degree, rebuilt.item_degree)
    assert np.allclose(appended.shared_counts(items), rebuilt.shared_counts(items))
    assert np.allclose(appended.user_profiles(np.arange(4)), rebuilt.user_profiles(np.arange(4)))


def test_co_within_equals_the_co_count_rows_on_a_random_graph_with_appends() -> None:
    rng = np.random.default_rng(7)
    n_users, n_items = 60, 40
    pairs = {
        (int(u), int(i))
        for u, i in zip(rng.integers(0, n_users, 500), rng.integers(0, n_items, 500), strict=True)
    }
    rows = [(u, i, float(t)) for t, (u, i) in enumerate(sorted(pairs))]
    base, extra = rows[: len(rows) - 40], rows[len(rows) - 40 :]
    attrs = [["x"]] * n_items
    appended = InteractionGraph.build(_frame(base), n_users, n_items, attrs)
    for u, i, t in extra:
        appended.append(u, i, t + 1000.0)
    rebuilt = InteractionGraph.build(_frame(rows), n_users, n_items, attrs)
    for _ in range(20):
        some = rng.choice(n_items, size=int(rng.integers(1, 25)), replace=False)
        for g in (appended, rebuilt):
            co, cos = g.co_within(some)
            assert np.array_equal(co, g.co_counts(some)[some])
            assert np.allclose(cos, g.item_cosine(some)[some], rtol=1e-12, atol=0)
        assert np.array_equal(appended.co_within(some)[0], rebuilt.co_within(some)[0])
    edges = {(u, i) for u, i, _ in rows}
    for g in (appended, rebuilt):
        assert all(g.has(u, i) == ((u, i) in edges) for u in range(n_users) for i in range(n_items))


def test_profile_cosines_of_a_few_users_and_of_many_match_dense_profiles() -> None:
    """Both ways of computing them (a gather for a few users, one product for many), with and
    without appended interactions, equal the cosine of dense profile rows."""
    rng = np.random.default_rng(3)
    n_users, n_items = 40, 30
    names = ["a", "b", "c", "d", "e"]
    attrs = [
        list(rng.choice(names, size=int(rng.integers(0, 3)), replace=False)) for _ in range(n_items)
    ]
    rows = [(int(rng.integers(n_users)), int(rng.integers(n_items)), float(t)) for t in range(300)]
    graph = InteractionGraph.build(_frame(rows), n_users, n_items, attrs)
    for u, i in [(1, 2), (1, 3), (5, 7)]:
        graph.append(u, i, 1000.0)
    unit = rng.random(graph.attributes.shape[1])
    unit /= np.linalg.norm(unit)

    def dense(users: np.ndarray) -> np.ndarray:
        prof = np.asarray([graph.attributes[graph.user_items(int(u))].sum(axis=0) for u in users])
        prof = prof.reshape(len(users), -1)
        norms = np.linalg.norm(prof, axis=1)
        return prof @ unit / np.where(norms > 0, norms, 1.0)

    few, many = np.array([1, 9, 5]), np.arange(n_users)
    assert 4 * len(few) < n_users <= 4 * len(many)  # one of each path
    for users in (few, many):
        assert np.allclose(graph.profile_cosines(users, unit), dense(users))


def test_neighbour_features_gathered_once_equal_the_separate_ones(monkeypatch) -> None:
    """``neighbour_features`` (one gather of the items' users) gives exactly what the two
    functions give on their own, after appends, and when the recent items are cut short."""
    from memory_store import features

    rng = np.random.default_rng(5)
    rows = [(int(rng.integers(30)), int(rng.integers(60)), float(t)) for t in range(900)]
    graph = InteractionGraph.build(_frame(rows), 30, 60, [["a"]] * 60)
    for u, i in [(2, 7), (2, 9), (4, 1)]:
        graph.append(u, i, 5000.0)
    vectors = rng.random((30, 8))
    for pool in (features.ITEM_POOL, 5):  # 5: fewer recent items than the user has
        monkeypatch.setattr(features, "ITEM_POOL", pool)
        for u in range(30):
            users, items = features.neighbour_features(graph, u, user_vectors=vectors)
            alone_u = user_neighbour_features(graph, u, user_vectors=vectors)
            alone_i = item_neighbour_features(graph, u, user_vector=vectors[u])
            for got, want in ((users, alone_u), (items, alone_i)):
                assert list(got.codes) == list(want.codes)
                for name in want.features:
                    assert np.array_equal(got.features[name], want.features[name]), name


def test_user_item_times_is_kept_only_until_the_graph_changes() -> None:
    graph = InteractionGraph.build(_frame(BASE), 4, 6, ATTRS)
    items, times = graph.user_item_times(0)
    assert list(items) == [0, 1] and graph.user_item_times(0)[0] is items  # asked again: kept
    with pytest.raises(ValueError, match="read-only"):
        items[0] = 5  # shared by every caller of the request
    assert graph.append(0, 2, 10.0)
    assert list(graph.user_item_times(0)[0]) == [0, 1, 2]  # the append is seen at once
    graph.compact()
    assert list(graph.user_item_times(0)[0]) == [0, 1, 2]
    assert list(graph.user_item_times(1)[0]) == [1, 2]
    graph.remove_user(0)
    assert list(graph.user_item_times(0)[0]) == []
