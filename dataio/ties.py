"""The one ranking rule of every method: descending score, ties broken by a seeded per-user hash.

Scores equal to 10 significant digits (relative to the row's largest magnitude) are ties. A tie is
broken by a seeded hash of (seed, user code, item code): a fixed pseudo-random order per user that
depends neither on the order of the item codes (which follows popularity in some datasets, so
"lower code first" favours popular items) nor on which other users are ranked in the same batch.
The offline roles rank with it on the request path, and every baseline and the evaluation rank with
it in batches; ``tie_keys`` of one user is the same in both.
"""

from __future__ import annotations

import hashlib

import numpy as np

SEED = 0
_PRECISION = 1e10


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fast, well-mixed hash of uint64 values."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def user_key(user_id: str, code: int | None) -> int:
    """The user's hash input: the user code, else a stable number derived from the id.

    A user the dataset does not know gets the top bit set, so it never collides with a code.
    """
    if code is not None:
        return int(code)
    digest = hashlib.sha256(user_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") | (1 << 63)


def tie_keys(users: np.ndarray, cands: np.ndarray, seed: int = SEED) -> np.ndarray:
    """Secondary sort key per candidate (lower first): ``(n_users, n_cand)`` for codes ``cands``."""
    cands = np.asarray(cands, np.int64)
    users = np.asarray(users, np.uint64).reshape(-1, 1)
    base = _splitmix64(np.full(1, seed, np.uint64))
    with np.errstate(over="ignore"):
        h = _splitmix64(base + users)
        h = _splitmix64(h ^ cands.astype(np.uint64))
    return (h >> np.uint64(11)).astype(np.float64)


def quantise(scores: np.ndarray) -> np.ndarray:
    """Scores rounded to 10 significant digits of each row's largest magnitude (ties are exact)."""
    scores = np.asarray(scores, np.float64)
    top = np.max(np.abs(scores), axis=1, keepdims=True) if scores.size else np.ones((0, 1))
    top[~np.isfinite(top) | (top == 0)] = 1.0
    return np.round(scores / top * _PRECISION)


def ranking_order(
    scores: np.ndarray, users: np.ndarray, cands: np.ndarray, seed: int = SEED
) -> np.ndarray:
    """Column order of each row, best first: descending score, ties by ``tie_keys``."""
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    cands = np.atleast_2d(np.asarray(cands, np.int64))
    if scores.shape != cands.shape:
        raise ValueError(
            f"scores and candidates must have the same shape, got {scores.shape}, {cands.shape}"
        )
    return np.lexsort((tie_keys(users, cands, seed), -quantise(scores)), axis=1)


def rank_candidates(
    scores: np.ndarray, users: np.ndarray, cands: np.ndarray, seed: int = SEED
) -> np.ndarray:
    """Candidate codes of each row, best first."""
    order = ranking_order(scores, users, cands, seed)
    return np.take_along_axis(np.atleast_2d(np.asarray(cands)), order, axis=1)


def target_ranks(
    scores: np.ndarray,
    users: np.ndarray,
    cands: np.ndarray,
    targets: np.ndarray,
    seed: int = SEED,
    keys: np.ndarray | None = None,
) -> np.ndarray:
    """1-based rank of each row's target under the rule (0 when the target is not a candidate).

    ``keys`` are ``tie_keys(users, cands, seed)``, passed when many score matrices of the same
    candidates are ranked (tuning). Equal to the target's position in ``rank_candidates``.
    """
    scores = np.atleast_2d(np.asarray(scores, np.float64))
    cands = np.atleast_2d(np.asarray(cands, np.int64))
    keys = tie_keys(users, cands, seed) if keys is None else keys
    is_target = cands == np.asarray(targets, np.int64).reshape(-1, 1)
    found = is_target.any(axis=1)
    col = is_target.argmax(axis=1)
    rows = np.arange(len(cands))
    q = quantise(scores)
    q_t, key_t = q[rows, col][:, None], keys[rows, col][:, None]
    ahead = (q > q_t) | ((q == q_t) & (keys < key_t))
    return np.where(found, ahead.sum(axis=1) + 1, 0)


def h1_mrr(ranks: np.ndarray) -> tuple[float, float]:
    """Mean H@1 and MRR of 1-based ranks (0 = miss)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return 0.0, 0.0
    mrr = np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)
    return float(np.mean(ranks == 1)), float(mrr.mean())
