"""Item-to-item statistics of interaction sequences: pruned shrunk cosine and transitions.

One definition for the offline ranker's index (``memory_store/ranker_index.py``), its index-time
tuning and the strong baselines (``evaluation/strong.py``):

- ``knn``: a candidate c scores ``sum_h w(h) * sim(h, c)`` over the user's history h, with
  ``w(h) = exp(-position_from_end / tau)`` and ``sim = co(h, c) / (sqrt(d_h d_c) + shrink)`` kept
  only where h is among c's ``k`` most similar items (``k = 0`` keeps all);
- ``transitions``: ``T[a, b]`` counts b following a within ``gap`` steps of one sequence; a
  candidate scores ``sum_{p < window} decay^p T[h_p, c] / (rowsum T[h_p] + alpha)`` over the user's
  last items (``h_0`` the latest).

The sweeps score a whole parameter grid for many users while computing the expensive parts once:
that is how parameters are tuned on the validation target.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from dataio.ties import h1_mrr, target_ranks, tie_keys
from memory_store.sequences import (
    HistoryPairs,
    PairLookup,
    Ragged,
    history_pairs,
    item_counts,
    normalised_popularity,
    recency_weights,
)

Params = dict[str, Any]


def grid(**axes: Sequence[Any]) -> list[Params]:
    """Cartesian product of parameter axes, as a list of parameter dicts."""
    keys = list(axes)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())]


@dataclass
class Tuned:
    """The grid point chosen on the validation target, with its metrics and every trial."""

    params: Params
    valid_h1: float
    valid_mrr: float
    seconds: float
    trials: list[tuple[Params, float, float]] = field(default_factory=list)


def best_point(
    sweep: Iterable[tuple[Params, np.ndarray]],
    users: np.ndarray,
    cands: np.ndarray,
    targets: np.ndarray,
    points: list[Params],
) -> Tuned:
    """The point with the best validation H@1, then MRR; the earliest in ``points`` wins a tie.

    Ranks follow the one tie rule (``dataio/ties.py``), so tuning and evaluation agree.
    """
    start = time.perf_counter()
    order = {id(p): j for j, p in enumerate(points)}
    keys = tie_keys(users, cands)
    best: tuple[tuple[float, float, int], Params, float, float] | None = None
    trials = []
    for params, scores in sweep:
        h1, mrr = h1_mrr(target_ranks(scores, users, cands, targets, keys=keys))
        trials.append((params, h1, mrr))
        rank = (h1, mrr, -order.get(id(params), len(points)))
        if best is None or rank > best[0]:
            best = (rank, params, h1, mrr)
    if best is None:
        raise ValueError("tuning needs at least one grid point; the grid is empty")
    return Tuned(best[1], best[2], best[3], time.perf_counter() - start, trials)


# ------------------------------------------------------------------------------- similarity


def cooccurrence(seqs: Ragged) -> tuple[sp.csr_matrix, np.ndarray]:
    """Item x item co-interaction counts (diagonal removed) and item degrees."""
    x = seqs.matrix()
    co = (x.T @ x).tocsr().astype(np.float64)
    degree = co.diagonal().copy()
    co.setdiag(0.0)
    co.eliminate_zeros()
    co.sort_indices()
    return co, degree


def row_kth_largest(matrix: sp.csr_matrix, k: int) -> np.ndarray:
    """The ``k``-th largest stored value of each row (0 for rows with fewer than ``k`` values)."""
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((-matrix.data, rows))
    position = np.arange(order.size) - matrix.indptr[rows[order]]
    out = np.zeros(matrix.shape[0])
    at = order[position == k - 1]
    out[rows[at]] = matrix.data[at]
    return out


def shrunk_cosine(co: sp.csr_matrix, degree: np.ndarray, shrink: float) -> sp.csr_matrix:
    """``co[i, j] / (sqrt(d_i d_j) + shrink)`` on the stored entries of ``co``."""
    rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
    sim = co.copy()
    sim.data = co.data / (np.sqrt(degree[rows] * degree[co.indices]) + shrink)
    return sim


def pruned_similarity(
    co: sp.csr_matrix, degree: np.ndarray, k: int, shrink: float
) -> sp.csr_matrix:
    """Row c = c's neighbours h with ``sim(h, c)``, kept where ``sim >= c's k-th largest``."""
    sim = shrunk_cosine(co, degree, shrink)
    if k > 0:
        threshold = row_kth_largest(sim, k)
        rows = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
        sim.data[sim.data < threshold[rows]] = 0.0
        sim.eliminate_zeros()
    return sim


def pair_cosine(
    co_pairs: np.ndarray,
    pairs: HistoryPairs,
    degree: np.ndarray,
    shrink: float,
    threshold: np.ndarray,
) -> np.ndarray:
    """Shrunk cosine of pairs, zero where the history item is not among the candidate's top k."""
    denom = np.sqrt(degree[pairs.item] * degree[pairs.cand]) + shrink
    sim = np.divide(co_pairs, denom, out=np.zeros_like(co_pairs), where=denom > 0)
    sim[pairs.item == pairs.cand] = 0.0  # a repeated item is no evidence for itself
    return np.where(sim >= threshold[pairs.cand], sim, 0.0)


KNN_GRID = grid(
    k=[0, 100],
    shrink=[0.0, 10.0, 50.0],
    tau=[2.0, 5.0, 10.0, 25.0, float("inf")],
    beta=[0.0, 0.03, 0.1, 0.3, 1.0],
    pop=["log", "linear"],
)


def knn_sweep(
    seqs: Ragged,
    users: np.ndarray,
    cands: np.ndarray,
    popularity: np.ndarray | None = None,
    points: list[Params] | None = None,
) -> Iterator[tuple[Params, np.ndarray]]:
    """Recency-weighted kNN + ``beta`` x popularity at every grid point; co-counts computed once."""
    points = KNN_GRID if points is None else points
    counts, degree = cooccurrence(seqs)
    pairs = history_pairs(seqs, users, cands)
    co_pairs = PairLookup(counts).get(pairs.item, pairs.cand)
    pop_raw = item_counts(seqs) if popularity is None else popularity
    pops = {t: normalised_popularity(pop_raw, t)[cands] for t in ("log", "linear")}
    structural: dict[tuple[int, float], np.ndarray] = {}
    weighted: dict[tuple[int, float, float], np.ndarray] = {}
    for params in points:
        key = (int(params["k"]), float(params["shrink"]))
        if key not in structural:
            threshold = np.zeros(seqs.n_items)
            if key[0] > 0:
                threshold = row_kth_largest(shrunk_cosine(counts, degree, key[1]), key[0])
            structural[key] = pair_cosine(co_pairs, pairs, degree, key[1], threshold)
        wkey = (*key, float(params["tau"]))
        if wkey not in weighted:
            weights = recency_weights(pairs.from_end, params["tau"])
            weighted[wkey] = pairs.total(structural[key] * weights)
        yield (
            params,
            weighted[wkey] + float(params.get("beta", 0.0)) * pops[params.get("pop", "log")],
        )


# ------------------------------------------------------------------------------ transitions


def transition_counts(seqs: Ragged, gap: int, direction: str = "forward") -> sp.csr_matrix:
    """``T[a, b]`` = how often ``b`` follows ``a`` within ``gap`` steps in one sequence.

    ``direction="backward"`` counts ``b`` preceding ``a``, ``"both"`` either order.
    """
    if direction not in ("forward", "backward", "both"):
        raise ValueError(f"direction must be forward, backward or both, not {direction!r}")
    owner = seqs.owner()
    rows, cols = [], []
    for d in range(1, gap + 1):
        same = owner[:-d] == owner[d:] if len(owner) > d else np.zeros(0, bool)
        rows.append(seqs.items[:-d][same])
        cols.append(seqs.items[d:][same])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    keep = r != c
    t = sp.csr_matrix(
        (np.ones(int(keep.sum())), (r[keep], c[keep])), shape=(seqs.n_items, seqs.n_items)
    )
    t.sum_duplicates()
    if direction == "backward":
        return t.T.tocsr()
    if direction == "both":
        return (t + t.T).tocsr()
    return t


TRANSITION_GRID = grid(
    direction=["forward", "both"],
    gap=[1, 3, 5, 10],
    window=[1, 3, 5, 10, 20],
    decay=[0.5, 0.8, 1.0],
    alpha=[1.0, 10.0],
    beta=[0.0, 0.01, 0.03, 0.1, 0.3, 1.0],
    pop=["log", "linear"],
)


def transition_sweep(
    seqs: Ragged,
    users: np.ndarray,
    cands: np.ndarray,
    popularity: np.ndarray | None = None,
    points: list[Params] | None = None,
) -> Iterator[tuple[Params, np.ndarray]]:
    """Transitions + ``beta`` x popularity at every grid point.

    Per (direction, gap, alpha) the pair values are summed once per history position; a
    (window, decay) point is then a weighted sum of those per-position matrices. Points are
    yielded grouped by (direction, gap, alpha), each group in grid order.
    """
    points = TRANSITION_GRID if points is None else points
    max_window = max(int(p["window"]) for p in points)
    pairs = history_pairs(seqs, users, cands, last=max_window)
    pop_raw = item_counts(seqs) if popularity is None else popularity
    pops = {t: normalised_popularity(pop_raw, t)[cands] for t in ("log", "linear")}
    size = pairs.shape[0] * pairs.shape[1]
    flat = pairs.from_end * size + pairs.row * pairs.shape[1] + pairs.col
    groups: dict[tuple[str, int, float], list[Params]] = {}
    for params in points:  # one group per (direction, gap, alpha), in order of first appearance
        key = (str(params.get("direction", "forward")), int(params["gap"]), float(params["alpha"]))
        groups.setdefault(key, []).append(params)
    counts: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for (direction, gap, alpha), members in groups.items():
        if (direction, gap) not in counts:
            t = transition_counts(seqs, gap, direction)
            rowsum = np.asarray(t.sum(axis=1)).ravel()
            counts[(direction, gap)] = (
                PairLookup(t).get(pairs.item, pairs.cand),
                rowsum[pairs.item],
            )
        raw, rowsum_pairs = counts[(direction, gap)]
        by_position = np.bincount(
            flat, weights=raw / (rowsum_pairs + alpha), minlength=max_window * size
        ).reshape(max_window, *pairs.shape)
        for params in members:
            window, decay = int(params["window"]), float(params["decay"])
            score = np.tensordot(decay ** np.arange(window), by_position[:window], axes=1)
            yield params, score + float(params.get("beta", 0.0)) * pops[params.get("pop", "log")]
