"""The offline ranker's index: what its channels read, built from the graph and kept up to date.

``roles/offline_ranker.py`` scores a candidate from these structures and the user's history
(``graph.user_item_times``); ``services/ranker_tuning.py`` chooses their parameters and the
channel weights on the validation target at index time and saves them as ``ranker.json``
(``RankerConfig``) in the store folder.

Structures (rows are candidate items, so a request gathers only its candidates' rows):

- ``knn``: the pruned shrunk item cosine of the tuned kNN (row c = c's ``k`` nearest items);
- ``transitions``: counts of b following a within ``gap`` steps, read forwards (row c = the
  items c followed) and backwards (row c = the items that followed c), with their totals;
- ``trend``: ``sum`` over users of ``exp(-position_from_end / trend_tau)`` of their entry of an
  item: how often it is among users' latest choices;
- ``profiles``: each user's recency-weighted, L2-normalised attribute profile (facets);
- neighbour users are weighted from the graph at request time (``neighbours``).

An append updates transitions, trend and the user's profile at once (O(history)); the kNN rows,
like the graph's ``similar``, are recomputed when the graph merges its deltas (``compact``) or on
``refresh`` (the evaluation warm-up calls it), so a live store never serves them stale for long.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from memory_store.graph import InteractionGraph
from memory_store.item_models import cooccurrence, pruned_similarity, transition_counts
from memory_store.sequences import Ragged, normalise_rows, recency_weights
from memory_store.sparse_rows import gather_rows

log = logging.getLogger(__name__)

RANKER_FILE = "ranker.json"
CHANNELS: tuple[str, ...] = (
    "knn",
    "trans",
    "trans_back",
    "votes",
    "facets",
    "own_attr",
    "pop",
    "trend",
    "mem_user",
    "mem_item",
)
NEGLIGIBLE = 7.0  # recency weights below exp(-7) ~ 0.001 are skipped on the request path


class RankerParams(BaseModel):
    """Channel parameters (own history from the tuned kNN / transitions; the rest defaults)."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    k: int = Field(default=100, ge=0, description="neighbours kept per candidate (0 = all)")
    shrink: float = Field(default=10.0, ge=0, description="cosine shrinkage")
    tau: float = Field(default=10.0, gt=0, description="recency scale of the history (positions)")
    gap: int = Field(default=3, ge=1, description="transitions counted within this many steps")
    window: int = Field(default=10, ge=1, description="latest items the transitions read")
    decay: float = Field(default=0.8, gt=0, description="transition weight per step back")
    alpha: float = Field(default=10.0, ge=0, description="transition smoothing")
    n_users: int = Field(default=50, ge=1, description="neighbour users voting")
    user_tau: float = Field(default=10.0, gt=0, description="recency scale of neighbour overlap")
    degree_damping: float = Field(default=0.5, ge=0, description="neighbour weight / degree^d")
    trend_tau: float = Field(default=3.0, gt=0, description="recency scale of the trend")
    mem_items: int = Field(default=10, ge=1, description="latest items whose memories count")


class RankerConfig(BaseModel):
    """What the offline ranker needs besides the index: parameters, scales and weights."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    params: RankerParams = Field(default_factory=RankerParams)
    weights: dict[str, float] = Field(description="weight per channel (absent = 0)")
    scales: dict[str, float] = Field(default_factory=dict, description="channel scale (p95)")
    tuned: bool = Field(default=False, description="False: defaults, not tuned on this data")
    report: dict[str, Any] = Field(default_factory=dict, description="how tuning went")

    def save(self, directory: Path) -> Path:
        """Write ``ranker.json`` (atomically: a reader never sees half a file)."""
        path = directory / RANKER_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2), "utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, directory: Path) -> RankerConfig:
        """``ranker.json`` of a store, or the untuned defaults when the index has none."""
        path = directory / RANKER_FILE
        if not path.exists():
            log.warning(
                "%s has no %s: the offline ranker uses untuned defaults", directory, path.name
            )
            return default_config()
        return cls.model_validate(json.loads(path.read_text("utf-8")))


def default_config() -> RankerConfig:
    """Untuned weights, for a store indexed before tuning existed (`memrec index` tunes them)."""
    weights = {"knn": 3.0, "trans": 1.5, "trans_back": 1.0, "votes": 1.0, "facets": 0.5}
    weights.update({"own_attr": 1.0, "pop": 0.5, "trend": 1.0, "mem_user": 0.3, "mem_item": 0.3})
    return RankerConfig(weights=weights, tuned=False)


def graph_sequences(graph: InteractionGraph) -> Ragged:
    """Every user's items in the order ``graph.user_item_times`` gives (time, then storage)."""
    users, items, times = graph.entries()
    order = np.lexsort((np.arange(len(users)), times, users))
    indptr = np.searchsorted(users[order], np.arange(graph.n_users + 1)).astype(np.int64)
    return Ragged(indptr, items[order].astype(np.int64), graph.n_items)


class RankerIndex:
    """Index-time structures of the channels, bound to one graph and kept up to date with it."""

    def __init__(self, graph: InteractionGraph, params: RankerParams) -> None:
        self.graph = graph
        self.params = params
        self._lock = threading.RLock()
        self._stale = True
        self.seconds = 0.0
        graph.listeners.append(self)
        self.refresh()

    # -- building ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Recompute every structure from the graph (appended interactions included)."""
        start = time.perf_counter()
        with self._lock:
            p = self.params
            seqs = graph_sequences(self.graph)
            counts, degree = cooccurrence(seqs)
            self.knn_rows = pruned_similarity(counts, degree, p.k, p.shrink)
            t = transition_counts(seqs, p.gap)
            self.trans_rows = t.T.tocsr()  # row c: T[h, c] for the h that c followed
            self.back_rows = t.tocsr()  # row c: T[c, h] for the h that followed c
            self.out_total = np.asarray(t.sum(axis=1)).ravel()  # rowsum T[h]
            self.in_total = np.asarray(t.sum(axis=0)).ravel()  # colsum T[:, h]
            self._t_in: dict[int, dict[int, float]] = defaultdict(dict)
            self._t_out: dict[int, dict[int, float]] = defaultdict(dict)
            weights = recency_weights(seqs.from_end(), p.trend_tau)
            self.trend = np.bincount(seqs.items, weights=weights, minlength=seqs.n_items)
            attrs = self.graph.attributes
            self.profiles = sp.csr_matrix((seqs.n_users, attrs.shape[1]))
            if attrs.shape[1]:
                own = seqs.matrix(recency_weights(seqs.from_end(), p.tau))
                self.profiles = normalise_rows(own @ attrs)
            self._profile_rows: dict[int, np.ndarray] = {}
            self.sequences = seqs
            self._stale = False
        self.seconds = time.perf_counter() - start

    def fresh(self) -> RankerIndex:
        """The index, refreshed first if the graph rewrote its base matrices since."""
        if self._stale:
            self.refresh()
        return self

    # -- keeping up with the graph -----------------------------------------------------------

    def on_compact(self) -> None:
        """The graph merged its deltas or removed a user: recompute when next read."""
        self._stale = True

    def on_append(self, user: int, item: int) -> None:
        """A new interaction at the end of ``user``'s history: O(history) updates."""
        history, _ = self.graph.user_item_times(user)
        if not len(history) or int(history[-1]) != item:  # inserted in the past: rebuild
            self._stale = True
            return
        p = self.params
        before = history[:-1]
        with self._lock:
            for h in before[-p.gap :].tolist():  # item follows each of the last ``gap`` items
                if h != item:
                    self._t_in[item][h] = self._t_in[item].get(h, 0.0) + 1.0
                    self._t_out[h][item] = self._t_out[h].get(item, 0.0) + 1.0
                    self.out_total[h] += 1.0
                    self.in_total[item] += 1.0
            steps = np.arange(len(before) - 1, -1, -1, dtype=np.float64)
            shift = np.exp(-(steps + 1) / p.trend_tau) - np.exp(-steps / p.trend_tau)
            np.add.at(self.trend, before, shift)
            self.trend[item] += 1.0
            if self.graph.attributes.shape[1]:
                self._profile_rows[user] = self._profile_of(history)

    def _profile_of(self, history: np.ndarray) -> np.ndarray:
        w = recency_weights(np.arange(len(history) - 1, -1, -1), self.params.tau)
        cols, vals, pos = gather_rows(self.graph.attributes, history)
        vec = np.bincount(cols, weights=vals * w[pos], minlength=self.graph.attributes.shape[1])
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm > 0 else vec

    # -- reads of the request path -----------------------------------------------------------

    def transitions_into(
        self, cands: np.ndarray, weights: np.ndarray, backward: bool
    ) -> np.ndarray:
        """``sum_h weights[h] * T[h, c]`` (or ``T[c, h]`` backward) for each candidate c."""
        rows = self.back_rows if backward else self.trans_rows
        cols, vals, pos = gather_rows(rows, cands)
        out = np.bincount(pos, weights=vals * weights[cols], minlength=len(cands))
        deltas = self._t_out if backward else self._t_in
        if deltas:
            with self._lock:
                for j, c in enumerate(cands.tolist()):
                    for h, n in deltas.get(c, {}).items():
                        out[j] += n * weights[h]
        return out

    def profile_rows(self, users: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``sum_j weights[j] * profile[users[j]]`` as a dense attribute vector."""
        n_attr = self.profiles.shape[1]
        out = np.zeros(n_attr)
        base: list[int] = []
        base_w: list[float] = []
        with self._lock:
            for u, w in zip(users.tolist(), np.asarray(weights, np.float64).tolist(), strict=True):
                row = self._profile_rows.get(u)
                if row is not None:
                    out += w * row
                else:
                    base.append(u)
                    base_w.append(w)
        if base:
            cols, vals, pos = gather_rows(self.profiles, np.asarray(base, np.int64))
            out += np.bincount(cols, weights=vals * np.asarray(base_w)[pos], minlength=n_attr)
        return out

    def profile_matrix(self, users: np.ndarray) -> np.ndarray:
        """Each user's attribute profile as a dense row (``profile_rows`` of one user, batched)."""
        users = np.asarray(users, np.int64)
        out = np.zeros((len(users), self.profiles.shape[1]))
        base: list[int] = []
        with self._lock:
            for j, u in enumerate(users.tolist()):
                row = self._profile_rows.get(u)
                if row is not None:
                    out[j] = row
                else:
                    base.append(j)
        if base:
            at = np.asarray(base, np.int64)
            cols, vals, pos = gather_rows(self.profiles, users[at])
            out[at[pos], cols] = vals
        return out

    def affinity(self, history: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Weight of each neighbour user v for a user with this history (time order).

        ``s(u, v) = sum_i w_u(i) idf(i) [v chose i] / |v|^degree_damping`` over the user's
        history: ``w_u`` recency weights (``user_tau``), ``idf(i) = log((U+1) / (d_i+1))``, so
        a recent, rare item shared with a focused user counts most.
        """
        p, g = self.params, self.graph
        keep = int(np.ceil(NEGLIGIBLE * p.user_tau))
        recent = history[-keep:]
        w = np.zeros(g.n_items)
        idf = np.log((g.n_users + 1.0) / (g.item_degree[recent] + 1.0))
        np.add.at(w, recent, recency_weights(np.arange(len(recent) - 1, -1, -1), p.user_tau) * idf)
        out = np.zeros(len(users))
        for j, v in enumerate(np.asarray(users, np.int64).tolist()):
            out[j] = w[g.user_items(v)].sum()
        return out / np.maximum(g.user_degree[users], 1.0) ** p.degree_damping
