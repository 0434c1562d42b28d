"""Strong simple baselines, the ones a reviewer asks for first (BENCHMARK.md, "Methods").

- ``recency-knn``: item-item cosine with shrinkage, each history item weighted
  ``exp(-position_from_end / tau)``, only the candidate's ``k`` nearest items counted, plus
  ``beta`` x normalised popularity;
- ``transition``: first-order transitions ``P(next = c | h)`` counted within ``gap`` steps (in
  either order with ``direction="both"``), summed over the user's last ``window`` items decayed by
  ``decay`` per step back, plus a popularity prior;
- ``ease``: Steck's closed form ``B = I - P / diag(P)``, ``P = (X'X + lambda I)^-1``;
- ``sasrec``: self-attention over the recent sequence, small and on CPU, when PyTorch is installed
  (``evaluation/sasrec.py``, the optional extra ``uv sync --extra sasrec``).

The kNN and transition scores are the same functions the offline ranker's channels use
(``memory_store/item_models.py``). Every model is tuned on the validation target (fit on train,
rank the validation candidates; the whole grid in one sweep), refitted on train plus the evaluated
users' validation items (SASRec: its chosen checkpoint, not refitted), and ranks the test
candidates under the one tie rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from dataio.candidates import CandidateFile
from dataio.dataset import Dataset
from dataio.split import Split
from dataio.ties import target_ranks
from evaluation.classical import ClassicalRun
from evaluation.methods import STRONG_BASELINES
from evaluation.sasrec import SASREC_GRID, sasrec_sweep
from memory_store.item_models import (
    KNN_GRID,
    TRANSITION_GRID,
    Params,
    best_point,
    grid,
    knn_sweep,
    transition_sweep,
)
from memory_store.sequences import Ragged, history_pairs, item_counts

logger = logging.getLogger(__name__)

EASE_GRID = grid(lam=[10.0, 50.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0])
# EASE costs O(n_items^3) time and n_items^2 memory per lambda: a shorter grid above this size.
EASE_FULL_GRID_MAX_ITEMS = 5000
EASE_GRID_LARGE = grid(lam=[250.0, 1000.0, 4000.0, 16000.0])


def ease_matrix(x: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE weights ``B`` (float32, zero diagonal) of a binary user x item matrix.

    The Gram matrix is inverted in place through its Cholesky factor (LAPACK potrf + potri) in
    float32: one ``n_items^2`` buffer, about ``n_items^3`` flops (counts stay exact in float32).
    """
    x32 = sp.csr_matrix(x, dtype=np.float32)
    gram = (x32.T @ x32).toarray()
    gram[np.diag_indices_from(gram)] += np.float32(lam)
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (gram,))
    factor, info = potrf(gram, lower=False, overwrite_a=True, clean=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: Gram + {lam} I is not positive definite ({info})")
    p, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"EASE: the inverse failed ({info})")
    p = np.triu(p)  # potri fills the upper triangle only
    p += np.triu(p, 1).T
    diag = np.diag(p).copy()
    p /= -diag[None, :]
    np.fill_diagonal(p, 0.0)
    return p


def ease_sweep(
    seqs: Ragged, users: np.ndarray, cands: np.ndarray, points: list[Params]
) -> Iterator[tuple[Params, np.ndarray]]:
    """EASE scores (sum over the history of ``B[h, c]``) at every lambda: one fit each."""
    pairs = history_pairs(seqs, users, cands)
    x = seqs.matrix()
    for params in points:
        start = time.perf_counter()
        b = ease_matrix(x, float(params["lam"]))
        logger.info("EASE lambda=%g: %.1f s", params["lam"], time.perf_counter() - start)
        yield params, pairs.total(b[pairs.item, pairs.cand].astype(np.float64))
        del b


def sweep(
    name: str, seqs: Ragged, users: np.ndarray, cands: np.ndarray, points: list[Params]
) -> Iterator[tuple[Params, np.ndarray]]:
    """Scores of ``cands`` for ``users`` at every grid point of baseline ``name``."""
    pop = item_counts(seqs)
    if name == "recency-knn":
        return knn_sweep(seqs, users, cands, pop, points)
    if name == "transition":
        return transition_sweep(seqs, users, cands, pop, points)
    if name == "ease":
        return ease_sweep(seqs, users, cands, points)
    if name == "sasrec":
        return sasrec_sweep(seqs, users, cands, points)
    raise ValueError(f"unknown strong baseline {name!r}; expected one of {STRONG_BASELINES}")


def default_grid(name: str, n_items: int) -> list[Params]:
    """The tuning grid of a strong baseline (EASE's is shorter on large catalogues)."""
    if name == "ease":
        return EASE_GRID if n_items <= EASE_FULL_GRID_MAX_ITEMS else EASE_GRID_LARGE
    return {"recency-knn": KNN_GRID, "transition": TRANSITION_GRID, "sasrec": SASREC_GRID}[name]


def split_sequences(ds: Dataset, split: Split, warm_users: list[int] | None = None) -> Ragged:
    """Train histories in time order, each evaluated user's validation item appended (warm-up)."""
    frames = [split.train]
    if warm_users is not None:
        frames.append(split.valid[split.valid["user"].isin(set(warm_users))])
    users = np.concatenate([f["user"].to_numpy(np.int64) for f in frames])
    items = np.concatenate([f["item"].to_numpy(np.int64) for f in frames])
    times = np.concatenate([f["ts"].to_numpy(np.float64) for f in frames])
    order = np.lexsort((np.arange(len(users)), times, users))  # stable: train order, then valid
    indptr = np.searchsorted(users[order], np.arange(ds.n_users + 1)).astype(np.int64)
    return Ragged(indptr, items[order], ds.n_items)


def _rows(cands: CandidateFile, users: list[int]) -> np.ndarray:
    return np.asarray([cands.users[u] for u in users], np.int64)


def _targets(split: Split, which: str, users: list[int]) -> np.ndarray:
    frame = split.valid if which == "valid" else split.test
    by_user = dict(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))
    return np.asarray([by_user[u] for u in users], np.int64)


def run_strong(
    name: str,
    ds: Dataset,
    split: Split,
    valid_cands: CandidateFile,
    test_cands: CandidateFile,
    users: list[int],
    points: list[Params] | None = None,
) -> tuple[ClassicalRun, dict[str, Any]]:
    """Tune ``name`` on validation, refit with the warm-up, rank the test; ranks and extras."""
    points = default_grid(name, ds.n_items) if points is None else points
    start = time.perf_counter()
    valid_users = sorted(valid_cands.users)
    v_users = np.asarray(valid_users, np.int64)
    v_rows, v_targets = _rows(valid_cands, valid_users), _targets(split, "valid", valid_users)
    train = split_sequences(ds, split)
    warm = split_sequences(ds, split, users)
    t_users = np.asarray(users, np.int64)
    rows = _rows(test_cands, users)
    test_scores: dict[int, np.ndarray] = {}
    sweeping = (
        sasrec_sweep(train, v_users, v_rows, points, (warm, t_users, rows), test_scores)
        if name == "sasrec"  # its chosen checkpoint ranks the test (no refit)
        else sweep(name, train, v_users, v_rows, points)
    )
    tuned = best_point(sweeping, v_users, v_rows, v_targets, points)
    tune_seconds = time.perf_counter() - start
    logger.info("%s: chose %s (valid H@1 %.4f)", name, tuned.params, tuned.valid_h1)
    if id(tuned.params) in test_scores:
        scores = test_scores[id(tuned.params)]
    else:
        ((_, scores),) = list(sweep(name, warm, t_users, rows, [tuned.params]))
    ranks = target_ranks(scores, t_users, rows, _targets(split, "test", users))
    run = ClassicalRun(
        name=name,
        params=tuned.params,
        valid_h1=tuned.valid_h1,
        valid_mrr=tuned.valid_mrr,
        ranks={u: int(r) for u, r in zip(users, ranks.tolist(), strict=True)},
    )
    extra = {
        "grid_points": len(points),
        "tune_seconds": round(tune_seconds, 2),
        "fit_seconds": round(time.perf_counter() - start - tune_seconds, 2),
    }
    return run, extra
