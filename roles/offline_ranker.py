"""The offline LLMRec scorer: a blend of evidence channels with weights tuned per dataset.

Score of candidate c: ``sum_k w_k * log1p(max(x_k(c), 0) / s_k)``; the channels ``x_k`` are
computed from the ranker index (``memory_store/ranker_index.py``), the user's history in the graph
and the memory vectors; weights ``w_k`` and scales ``s_k`` (the 95th percentile of a channel's
positive values on the validation candidates) come from ``ranker.json``, chosen at index time on
the validation target (``services/ranker_tuning.py``), never on the test target.

Channels (what each reads):

- ``knn``: the recency-weighted pruned item cosine of the user's history to c;
- ``trans`` / ``trans_back``: transitions from the user's latest items to c, read forwards and
  backwards (sequence);
- ``votes``: the share of the curated neighbour users who chose c, each weighted by its affinity
  to the user (``RankerIndex.affinity``); ``facets``: c's attributes against the synthesized
  facets (both read what the recommend graph curated and synthesized: collaborative read only);
- ``own_attr``: c's attributes against the user's own profile;
- ``pop`` / ``trend``: popularity and recent popularity (train and live interactions only);
- ``mem_user``: c's memory against the user's memory; ``mem_item``: c's memory against the
  memories of the user's latest items (both read ``MemoryVectors``, refreshed on every write, so
  propagation's rewrites of item memories move the next score).

``request_channels`` is the one path: a request (O(history + the candidates' rows)) and the
index-time tuning, which computes it for every validation user, read the same values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memory_store.ranker_index import RankerIndex
from memory_store.sequences import (
    normalised_popularity,
    recency_weights,
    row_dot,
)
from memory_store.vectors import MemoryVectors

COLLABORATIVE = ("votes", "facets")
OWN_HISTORY = ("knn", "trans", "trans_back", "own_attr")
MEMORY = ("mem_user", "mem_item")


@dataclass(frozen=True)
class Reads:
    """What the request may read (the method's switches, as the ranking input carries them)."""

    own: bool = True  # the user's own history and memory (False for vanilla)
    collaborative: bool = True  # neighbour users (False without collaborative read)
    memory: bool = True  # the memory vectors


def _recency(n: int, tau: float) -> np.ndarray:
    return recency_weights(np.arange(n - 1, -1, -1), tau)


def request_channels(
    index: RankerIndex,
    vectors: MemoryVectors | None,
    user: int | None,
    cands: np.ndarray,
    reads: Reads = Reads(),
    voters: tuple[np.ndarray, np.ndarray] | None = None,
    facets: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every channel's raw value for one request's candidates (the online path).

    ``voters`` are the neighbour users the request curated (codes, weights); ``facets`` the
    synthesized facets as a dense attribute vector. Without them those channels are absent.
    """
    p, g = index.params, index.graph
    cands = np.asarray(cands, np.int64)
    out = prior_channels(index, cands)
    if user is None:
        return out
    history, _ = g.user_item_times(user)
    if reads.own and len(history):
        out.update(own_channels(index, user, history, cands))
    if voters is not None and len(voters[0]):
        users, weights = voters
        mass = float(weights.sum())
        out["votes"] = g.votes(users, weights, cands) / (mass if mass > 0 else 1.0)
    if facets is not None and g.attributes.shape[1]:
        norm = float(np.linalg.norm(facets))
        out["facets"] = row_dot(g.attributes, cands, facets / norm if norm > 0 else facets)
    if reads.own and reads.memory and vectors is not None:
        cand_vecs = vectors.items[cands].astype(np.float64)
        out["mem_user"] = cand_vecs @ vectors.users[user].astype(np.float64)
        recent = history[-p.mem_items :]
        if len(recent):
            profile = _recency(len(recent), p.tau) @ vectors.items[recent].astype(np.float64)
            norm = float(np.linalg.norm(profile))
            out["mem_item"] = cand_vecs @ (profile / norm if norm > 0 else profile)
    return out


def own_channels(
    index: RankerIndex, user: int, history: np.ndarray, cands: np.ndarray
) -> dict[str, np.ndarray]:
    """The channels of the user's own history: kNN, transitions both ways, own attributes."""
    p, g = index.params, index.graph
    out: dict[str, np.ndarray] = {}
    w = np.zeros(g.n_items)
    np.add.at(w, history, _recency(len(history), p.tau))
    out["knn"] = row_dot(index.knn_rows, cands, w)
    last = history[-p.window :]
    steps = np.arange(len(last) - 1, -1, -1)
    for name, total, backward in (
        ("trans", index.out_total, False),
        ("trans_back", index.in_total, True),
    ):
        v = np.zeros(g.n_items)
        np.add.at(v, last, p.decay**steps / (total[last] + p.alpha))
        out[name] = index.transitions_into(cands, v, backward=backward)
    if g.attributes.shape[1]:
        own = index.profile_rows(np.array([user]), np.ones(1))
        out["own_attr"] = row_dot(g.attributes, cands, own)
    return out


def prior_channels(index: RankerIndex, cands: np.ndarray) -> dict[str, np.ndarray]:
    """Popularity and trend: what even a user the dataset does not know gets."""
    return {
        "pop": normalised_popularity(index.graph.item_degree)[cands],
        "trend": normalised_popularity(index.trend)[cands],
    }


# --------------------------------------------------------------------------------- blending


def features(
    channels: dict[str, np.ndarray], names: Sequence[str], scales: dict[str, float]
) -> np.ndarray:
    """``log1p(max(channel, 0) / scale)`` per channel, stacked on the last axis."""
    return np.stack(
        [np.log1p(np.maximum(channels[n], 0.0) / scales.get(n, 1.0)) for n in names], axis=-1
    )


def blend(
    channels: dict[str, np.ndarray], weights: dict[str, float], scales: dict[str, float]
) -> np.ndarray:
    """The ranking score: ``sum_k w_k * log1p(max(channel_k, 0) / scale_k)`` (absent = 0)."""
    shape = next(iter(channels.values())).shape
    names = [n for n, w in weights.items() if w and n in channels]
    if not names:
        return np.zeros(shape)
    return features(channels, names, scales) @ np.asarray([weights[n] for n in names])


def contributions(
    channels: dict[str, np.ndarray], weights: dict[str, float], scales: dict[str, float]
) -> dict[str, np.ndarray]:
    """Each weighted channel's share of the score (what the rationale explains)."""
    return {
        n: weights[n] * np.log1p(np.maximum(v, 0.0) / scales.get(n, 1.0))
        for n, v in channels.items()
        if weights.get(n)
    }


def channel_scales(channels: dict[str, np.ndarray], q: float = 95.0) -> dict[str, float]:
    """Scale per channel: the ``q``-th percentile of its positive values (1 when it has none)."""
    scales = {}
    for name, values in channels.items():
        positive = values[values > 0]
        scales[name] = float(np.percentile(positive, q)) if positive.size else 1.0
    return scales


@dataclass
class WeightFit:
    """Non-negative channel weights fitted on the validation target."""

    weights: dict[str, float]
    log_likelihood: float
    seconds: float


def fit_weights(
    channels: dict[str, np.ndarray],
    scales: dict[str, float],
    cands: np.ndarray,
    targets: np.ndarray,
    l2: float = 1e-4,
) -> WeightFit:
    """Non-negative weights maximising the validation likelihood of a conditional logit.

    ``P(target | candidates) = softmax(features @ w)`` over each user's candidates, minus
    ``l2 * |w|^2``; L-BFGS-B from zero: deterministic, and a smooth stand-in for H@1 that is
    far less noisy than searching H@1 directly on a few hundred users.
    """
    from scipy.optimize import minimize

    start = time.perf_counter()
    names = list(channels)
    x = features(channels, names, scales)
    is_target = cands == np.asarray(targets).reshape(-1, 1)
    keep = is_target.any(axis=1)
    x, y = x[keep], is_target[keep].argmax(axis=1)
    rows = np.arange(len(y))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = x @ w
        s -= s.max(axis=1, keepdims=True)
        lse = np.log(np.exp(s).sum(axis=1))
        prob = np.exp(s - lse[:, None])
        ll = float(np.mean(s[rows, y] - lse))
        grad = np.mean(x[rows, y] - np.einsum("nm,nmc->nc", prob, x), axis=0)
        return -ll + l2 * float(w @ w), -grad + 2 * l2 * w

    found = minimize(
        loss, np.zeros(len(names)), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * len(names)
    )
    weights = {n: round(float(w), 4) for n, w in zip(names, found.x, strict=True)}
    return WeightFit(
        weights={n: w for n, w in weights.items() if w > 0},
        log_likelihood=-float(found.fun),
        seconds=time.perf_counter() - start,
    )
