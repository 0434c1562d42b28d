"""The offline ranker: hand-computed channels, the one tie rule, the index kept up to date on
append, index-time tuning, and item memories moving the next score. Unit lane (tiny data)."""

from __future__ import annotations

import numpy as np
import pytest

from dataio.ties import rank_candidates, target_ranks
from memory_store.graph import InteractionGraph
from memory_store.item_models import knn_sweep, transition_counts, transition_sweep
from memory_store.ranker_index import RankerConfig, RankerIndex, RankerParams, graph_sequences
from memory_store.sequences import as_ragged
from memory_store.writes import apply_write
from roles.offline_ranker import channel_scales, fit_weights, request_channels
from roles.offline_roles import OfflineLLMRec
from schemas.records import CandidateItem, RankingInput
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures

ws, ctx = workspace_fixtures(TINY_MOVIES)

# users' sequences, oldest first; item codes 0..5
SEQS = [[0, 1, 2], [1, 2, 3], [0, 2, 3, 4], [4, 5], [1, 3, 5]]
N_ITEMS = 6


def _graph(seqs: list[list[int]], n_items: int = N_ITEMS) -> InteractionGraph:
    """A graph whose users interacted in the given order (one second apart)."""
    import pandas as pd

    rows = [(u, i, t) for u, seq in enumerate(seqs) for t, i in enumerate(seq)]
    frame = pd.DataFrame(rows, columns=["user", "item", "ts"])
    attrs = [[f"g{i % 3}", f"h{i % 2}"] for i in range(n_items)]
    return InteractionGraph.build(frame, len(seqs), n_items, attrs, has_clock=False)


def test_knn_sweep_matches_the_formula() -> None:
    point = {"k": 0, "shrink": 1.0, "tau": 2.0, "beta": 0.5, "pop": "linear"}
    seqs = as_ragged(SEQS, N_ITEMS)
    cands = np.array([[3, 4, 5]])
    ((_, got),) = list(knn_sweep(seqs, np.array([0]), cands, None, [point]))
    x = np.zeros((5, N_ITEMS))
    for u, s in enumerate(SEQS):
        x[u, s] = 1
    co = x.T @ x
    deg = np.diag(co).copy()

    def expected(cand: int) -> float:
        total = 0.0
        for position, h in enumerate(SEQS[0]):
            w = np.exp(-(len(SEQS[0]) - 1 - position) / 2.0)
            total += w * co[h, cand] / (np.sqrt(deg[h] * deg[cand]) + 1.0)
        return total + 0.5 * deg[cand] / deg.max()

    assert got[0] == pytest.approx([expected(c) for c in (3, 4, 5)])


def test_knn_pruning_keeps_only_the_candidates_top_k() -> None:
    seqs = as_ragged(SEQS, N_ITEMS)
    full, pruned = (
        {"k": k, "shrink": 0.0, "tau": float("inf"), "beta": 0.0, "pop": "log"} for k in (0, 1)
    )
    cands = np.array([[3], [3]])
    scores = dict(
        (p["k"], s) for p, s in knn_sweep(seqs, np.array([0, 3]), cands, None, [full, pruned])
    )
    # item 3's nearest are 1 and 2 (cosine 2/3, tied, both kept); user 3 has neither
    assert scores[0][0, 0] > scores[1][0, 0] > 0
    assert scores[1][1, 0] == 0.0 < scores[0][1, 0]


def test_transition_counts_by_direction_and_gap() -> None:
    seqs = as_ragged([[0, 1, 2]], 3)
    assert transition_counts(seqs, 1).toarray().tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    gap2 = transition_counts(seqs, 2).toarray()
    assert gap2[0, 2] == 1 and gap2[2, 0] == 0
    both = transition_counts(seqs, 1, "both").toarray()
    assert both.tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    with pytest.raises(ValueError, match="direction"):
        transition_counts(seqs, 1, "sideways")


def test_transition_sweep_scores_the_latest_items_only() -> None:
    seqs = as_ragged(SEQS, N_ITEMS)
    point = {"gap": 1, "window": 1, "decay": 1.0, "alpha": 0.0, "beta": 0.0, "pop": "log"}
    ((_, got),) = list(transition_sweep(seqs, np.array([0]), np.array([[3, 4, 5]]), None, [point]))
    # user 0's last item is 2; 2 is followed by 3 twice in other sequences and by nothing else
    assert got[0].tolist() == [1.0, 0.0, 0.0]


def test_ties_break_by_a_per_user_hash_independent_of_the_batch_and_codes() -> None:
    cands = np.array([[5, 1, 9, 3]])
    alone = target_ranks(np.zeros((1, 4)), np.array([42]), cands, np.array([9]))
    batch = target_ranks(np.zeros((2, 4)), np.array([7, 42]), np.vstack([cands, cands]), [1, 9])
    assert alone[0] == batch[1]
    # a strictly higher score always wins, whatever the hash says
    assert target_ranks(np.array([[0, 0, 1e-9, 0]]), np.array([0]), cands, np.array([9]))[0] == 1
    # the order does not follow item codes: over many users, the lower code is first about half
    users = np.arange(2000)
    first = rank_candidates(np.zeros((2000, 2)), users, np.tile([3, 8], (2000, 1)))[:, 0]
    assert 0.45 < float(np.mean(first == 3)) < 0.55
    # rank of the target == its position in the ranked list
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (50, 10)).astype(float)
    cands = np.array([rng.permutation(100)[:10] for _ in range(50)])
    ranked = rank_candidates(scores, np.arange(50), cands)
    targets = cands[:, 4]
    ranks = target_ranks(scores, np.arange(50), cands, targets)
    positions = [int(np.flatnonzero(r == t)[0]) + 1 for r, t in zip(ranked, targets, strict=True)]
    assert ranks.tolist() == positions


PARAMS = RankerParams(k=0, shrink=1.0, tau=3.0, gap=2, window=3, decay=0.7, alpha=1.0)


def test_request_channels_equal_the_baselines_sweeps() -> None:
    """The ranker's own-history channels are the strong baselines' scores (one definition)."""
    graph = _graph(SEQS)
    index = RankerIndex(graph, PARAMS)
    cands = np.array([3, 4, 5, 0])
    seqs = graph_sequences(graph)
    knn = {"k": 0, "shrink": 1.0, "tau": 3.0, "beta": 0.0, "pop": "log"}
    trans = {"gap": 2, "window": 3, "decay": 0.7, "alpha": 1.0, "beta": 0.0, "pop": "log"}
    for user in range(len(SEQS)):
        got = request_channels(index, None, user, cands)
        rows = cands[None, :]
        ((_, k),) = list(knn_sweep(seqs, np.array([user]), rows, None, [knn]))
        assert got["knn"] == pytest.approx(k[0])
        for name, direction in (("trans", "forward"), ("trans_back", "backward")):
            point = {**trans, "direction": direction}
            ((_, t),) = list(transition_sweep(seqs, np.array([user]), rows, None, [point]))
            assert got[name] == pytest.approx(t[0]), name


def test_appends_keep_the_index_equal_to_a_rebuild() -> None:
    graph = _graph(SEQS)
    index = RankerIndex(graph, PARAMS)
    for user, item, ts in ((0, 3, 10.0), (3, 1, 11.0), (0, 5, 12.0)):
        assert graph.append(user, item, ts)
    rebuilt = RankerIndex(
        _graph([[0, 1, 2, 3, 5], [1, 2, 3], [0, 2, 3, 4], [4, 5, 1], [1, 3, 5]]), PARAMS
    )
    cands = np.array([0, 1, 2, 3, 4, 5])
    for user in range(len(SEQS)):
        live, fresh = (
            request_channels(index, None, user, cands),
            request_channels(rebuilt, None, user, cands),
        )
        for name in ("trans", "trans_back", "own_attr", "trend", "pop"):
            assert live[name] == pytest.approx(fresh[name]), (user, name)
    graph.compact()  # the kNN rows follow when the graph merges its deltas
    live = request_channels(index.fresh(), None, 0, cands)
    assert live["knn"] == pytest.approx(request_channels(rebuilt, None, 0, cands)["knn"])


def test_profile_matrix_rows_are_each_users_profile_with_and_without_appends() -> None:
    graph = _graph(SEQS)
    index = RankerIndex(graph, PARAMS)
    assert graph.append(0, 3, 10.0) and graph.append(3, 1, 11.0)  # users 0 and 3: live rows
    users = np.array([3, 1, 0, 4, 1])  # appended users, others, a repeat
    matrix = index.profile_matrix(users)
    for j, u in enumerate(users.tolist()):
        assert np.array_equal(matrix[j], index.profile_rows(np.array([u]), np.ones(1))), u
    assert np.abs(matrix).sum(axis=1).all()  # every one of these users has a profile


def test_an_append_at_the_time_of_the_last_rows_goes_after_them_without_a_rebuild() -> None:
    """Rows at one timestamp keep their order (``TIE_STEP`` apart); an append at that same time
    (a warm-up replaying its validation item) is the latest, as in the data: no index rebuild."""
    import pandas as pd

    frame = pd.DataFrame(
        [(0, 0, 5), (0, 1, 5), (0, 2, 5), (1, 1, 3)], columns=["user", "item", "ts"]
    )
    attrs = [[f"g{i % 3}"] for i in range(N_ITEMS)]
    graph = InteractionGraph.build(frame, 2, N_ITEMS, attrs, has_clock=True)
    index = RankerIndex(graph, PARAMS)
    assert graph.append(0, 4, 5.0)
    items, _ = graph.user_item_times(0)
    assert items.tolist() == [0, 1, 2, 4]
    assert not index._stale  # kept up to date incrementally, not marked for a rebuild
    rebuilt = RankerIndex(graph, PARAMS)
    cands = np.arange(N_ITEMS)
    live, fresh = request_channels(index, None, 0, cands), request_channels(rebuilt, None, 0, cands)
    for name in ("trans", "trans_back", "trend", "pop"):
        assert live[name] == pytest.approx(fresh[name]), name


def test_fit_weights_finds_the_informative_channel() -> None:
    rng = np.random.default_rng(3)
    n, m = 300, 10
    cands = np.tile(np.arange(m), (n, 1))
    targets = rng.integers(0, m, n)
    informative = rng.random((n, m)) * 0.5
    informative[np.arange(n), targets] += 0.6
    channels = {"good": informative, "noise": rng.random((n, m))}
    fit = fit_weights(channels, channel_scales(channels), cands, targets)
    assert fit.weights["good"] > 5 * fit.weights.get("noise", 0.0)


def test_index_tunes_the_ranker_of_a_generic_folder(ws) -> None:  # noqa: F811
    config = RankerConfig.load(ws.directory)
    assert config.tuned and config.weights and all(w > 0 for w in config.weights.values())
    report = config.report
    assert report["valid_users"] == len(ws.split.valid) and 0 <= report["valid_h1"] <= 1
    assert set(report["group_lift_cv_h1"]) == {"neighbours", "memories"}
    assert set(config.weights) <= set(report["channels_kept"])
    assert config.params.k in (0, 100) and config.params.gap in (1, 3, 5, 10)


def _ranking_input(ws, user_id: str) -> RankingInput:  # noqa: F811
    codes = ws.benchmark_candidates()[ws.user_code(user_id)]
    return RankingInput(
        user_id=user_id,
        user_memory=ws.memory_text("user", user_id),
        candidates=[
            CandidateItem(item_id=ws.dataset.item_ids[c], title=ws.title(c)) for c in codes
        ],
    )


def test_an_item_memory_change_moves_the_next_offline_score(ws) -> None:  # noqa: F811
    params = ws.ranker()[1].params
    config = RankerConfig(params=params, weights={"knn": 1.0, "mem_item": 1.0})
    ws.derived["ranker"] = (RankerIndex(ws.graph, params), config)
    inp = _ranking_input(ws, "1")
    before = {r.item_id: r.score for r in OfflineLLMRec(ws).ranking(inp).items}
    target = inp.candidates[-1].item_id
    history = ws.graph.user_item_times(ws.user_code("1"))[0]
    recent = " ".join(ws.memory_text("item", ws.dataset.item_ids[h]) for h in history[-3:])
    text = f"{ws.memory_text('item', target)} Often chosen with: {recent}"
    apply_write(ws.memories, ws.events, "item", target, text, cause="test-propagation")
    ws.on_memory_write("item", target, text)  # what every propagation write does
    after = {r.item_id: r.score for r in OfflineLLMRec(ws).ranking(inp).items}
    assert after[target] > before[target]
    assert all(after[c] == before[c] for c in before if c != target)


def test_untuned_store_falls_back_to_defaults(tmp_path) -> None:
    config = RankerConfig.load(tmp_path)
    assert not config.tuned and config.weights["knn"] > 0
