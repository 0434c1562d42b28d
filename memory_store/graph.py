"""The interaction graph on scipy sparse matrices, built from the train split only.

Holds who interacted with what (user x item CSR with timestamps), item-item co-interaction
counts, degrees, last-activity times and item attribute vectors. New interactions are appended
to small deltas (O(degree of the user) work) and merged into the base matrices only when the delta
grows past a fraction of the graph, so an append never rebuilds the graph.
"""

from __future__ import annotations

import logging
from array import array
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from dataio.files import atomic_write_text, atomic_write_with
from memory_store import similarity
from memory_store.graph_counts import CoCounts
from memory_store.graph_profiles import AttributeProfiles
from memory_store.similarity import attribute_matrix
from memory_store.sparse_rows import binary_csr, gather_rows

log = logging.getLogger(__name__)
TIE_STEP = 1e-5  # rows of one user at the same timestamp keep their order, this far apart
TIE_SPAN = 0.01  # up to 1,000 such rows; an append at that time goes after them

_SECONDS_PER_DAY = 86400.0
SIMILAR_K = 50  # neighbours kept per item in the precomputed similarity
SIMILAR_SHRINK = 10.0
GRAPH_FILES = ("ui_ts.npz", "attributes.npz", "similar.npz", "attributes.txt", "meta.txt")


NOT_CHOSEN = ("negative", "skip", "dislike", "rating:1", "rating:2")


def is_choice(kind: str) -> bool:
    """Whether an interaction kind means the user chose the item (a dislike is no co-choice)."""
    return not kind.startswith(NOT_CHOSEN)


class InteractionGraph(CoCounts, AttributeProfiles):
    """User-item interactions with the collaborative features curation needs.

    Only choices are edges: an item a user disliked never counts as co-chosen with their likes
    (co-counts, neighbours, propagation); it is kept apart in ``rejected`` so it is not proposed
    to them again.
    """

    def __init__(
        self,
        ui: sp.csr_matrix,
        ts: sp.csr_matrix,
        attributes: sp.csr_matrix,
        attribute_names: list[str],
        has_clock: bool,
    ) -> None:
        self.n_users, self.n_items = ui.shape
        self.has_clock = has_clock
        self.attribute_names = attribute_names
        self.attributes = attributes  # item x attribute, rows L2-normalised
        self._ui = ui.tocsr()
        self._ts = ts.tocsr()
        self._iu = self._ui.T.tocsr()
        self._co = (self._iu @ self._ui).tocsr()  # item x item co-interaction counts
        self.user_degree = np.asarray(self._ui.sum(axis=1)).ravel().astype(np.float64)
        self.item_degree = np.asarray(self._iu.sum(axis=1)).ravel().astype(np.float64)
        self.user_last_ts = np.asarray(self._ts.max(axis=1).todense()).ravel().astype(np.float64)
        self.item_last_ts = np.asarray(self._ts.T.tocsr().max(axis=1).todense()).ravel()
        self._delta_ui: dict[int, dict[int, float]] = defaultdict(dict)
        self._delta_iu: dict[int, list[int]] = defaultdict(list)
        # appended co-interactions: per item, the partner item of each new pair (int32, repeats
        # count); 4 bytes a pair, where a dict of float counts took about 25 times that
        self._delta_co: dict[int, array] = {}
        self._n_delta = 0
        self._similar: sp.csr_matrix | None = None
        self._profiles: tuple[sp.csr_matrix, np.ndarray] | None = None  # graph_profiles
        # the last user_item_times answer: a request asks for one user's several times
        self._version = 0  # bumped before and after every change of a user's items
        self._times: tuple[int, int, np.ndarray, np.ndarray] | None = None
        # derived structures kept up to date: on_append(user, item) after an append, on_compact()
        # when the base matrices are rewritten (memory_store/ranker_index.RankerIndex)
        self.listeners: list[Any] = []
        self.rejected: dict[int, set[int]] = defaultdict(set)  # user -> items they disliked

    # ----------------------------------------------------------------- construction
    @classmethod
    def build(
        cls,
        interactions: pd.DataFrame,
        n_users: int,
        n_items: int,
        item_attributes: Sequence[Sequence[str]],
        has_clock: bool = True,
    ) -> InteractionGraph:
        """Build from an interactions frame (columns user, item, ts) — pass the train split.

        Rows are in time order; a user's rows with the same timestamp keep their order through
        a 1e-5 s offset each (sequence features read it), +1 so a time of 0 is still stored.
        """
        users = interactions["user"].to_numpy(np.int64)
        items = interactions["item"].to_numpy(np.int64)
        ui = binary_csr(users, items, (n_users, n_items))
        same = interactions.groupby(["user", "ts"], sort=False).cumcount().to_numpy(np.float64)
        times = interactions["ts"].to_numpy(np.float64) + 1.0 + same * TIE_STEP
        ts = sp.csr_matrix((times, (users, items)), shape=(n_users, n_items))
        ts.sum_duplicates()
        attrs, names = attribute_matrix(item_attributes, n_items)
        return cls(ui, ts, attrs, names, has_clock)

    # ----------------------------------------------------------------- appends
    def append(self, user: int, item: int, ts: float) -> bool:
        """Add one interaction; returns False if the user already had the item."""
        if not (0 <= user < self.n_users and 0 <= item < self.n_items):
            raise IndexError(f"user {user} / item {item} outside the graph")
        if item in self._delta_ui.get(user, {}) or self._ui[user, item] != 0:
            return False
        self._version += 1
        history = self.user_items(user)
        stored = float(ts) + 1.0
        last = float(self.user_last_ts[user])
        if stored <= last < stored + TIE_SPAN:  # same time as the user's last rows: after them
            stored = last + TIE_STEP
        self._delta_ui[user][item] = stored
        self._delta_iu[item].append(user)
        partners = np.asarray(history, np.int32)
        own = self._co_partners(item)
        own.append(item)
        own.frombytes(partners.tobytes())
        for j in partners.tolist():
            self._co_partners(j).append(item)
        self.user_degree[user] += 1
        self.item_degree[item] += 1
        self.user_last_ts[user] = max(self.user_last_ts[user], stored)
        self.item_last_ts[item] = max(self.item_last_ts[item], stored)
        self._n_delta += 1
        self._version += 1
        for listener in self.listeners:
            listener.on_append(user, item)
        if self._n_delta > max(2000, self._ui.nnz // 20):
            self.compact()
        return True

    def _co_partners(self, item: int) -> array:
        row = self._delta_co.get(item)
        if row is None:
            row = self._delta_co[item] = array("i")
        return row

    def _delta_co_row(self, item: int) -> np.ndarray:
        """The partners of an item's appended co-interactions (a repeated partner counts twice)."""
        row = self._delta_co.get(item)
        return np.frombuffer(row, np.int32) if row else np.zeros(0, np.int32)

    def reject(self, user: int, item: int) -> None:
        """Note a dislike: never an edge, only kept out of the user's suggestions."""
        if not (0 <= user < self.n_users and 0 <= item < self.n_items):
            raise IndexError(f"user {user} / item {item} outside the graph")
        self.rejected[user].add(item)

    def remove_user(self, user: int) -> int:
        """Remove every interaction of a user (privacy deletion); returns how many were removed.

        Rare by design: the base matrices are rewritten (O(nnz)). Co-interaction counts, degrees
        and profiles are corrected at once; ``similar`` is recomputed when next read.
        """
        self.compact()
        self.rejected.pop(user, None)
        items = self.user_items(user)
        if not len(items):
            return 0
        self._version += 1
        lo, hi = self._ui.indptr[user], self._ui.indptr[user + 1]
        self._ui.data[lo:hi] = 0.0
        self._ui.eliminate_zeros()
        self._ts.data[self._ts.indptr[user] : self._ts.indptr[user + 1]] = 0.0
        self._ts.eliminate_zeros()
        self._iu = self._ui.T.tocsr()
        pair_rows = np.repeat(items, len(items))
        pair_cols = np.tile(items, len(items))
        own = sp.csr_matrix((np.ones(len(pair_rows)), (pair_rows, pair_cols)), shape=self._co.shape)
        self._co = (self._co - own).tocsr()
        self._co.eliminate_zeros()
        self.item_degree[items] -= 1
        self.user_degree[user] = 0
        self.user_last_ts[user] = 0.0
        self._rebuilt()
        return len(items)

    def compact(self) -> None:
        """Merge the deltas into the base matrices (amortised, only after many appends)."""
        if not self._n_delta:
            return
        self._version += 1
        rows, cols, tss = [], [], []
        for u, items in self._delta_ui.items():
            for i, t in items.items():
                rows.append(u)
                cols.append(i)
                tss.append(t)
        shape = (self.n_users, self.n_items)
        self._ui = (self._ui + binary_csr(np.array(rows), np.array(cols), shape)).tocsr()
        self._ts = (self._ts + sp.csr_matrix((tss, (rows, cols)), shape=shape)).tocsr()
        self._iu = self._ui.T.tocsr()
        co_items = list(self._delta_co)
        co_r = np.repeat(co_items, [len(self._delta_co[i]) for i in co_items])
        co_c = np.concatenate([self._delta_co_row(i) for i in co_items]) if co_items else co_r
        co_v = np.ones(len(co_r))
        delta = sp.csr_matrix((co_v, (co_r, co_c)), shape=(self.n_items, self.n_items))
        self._co = (self._co + delta).tocsr()
        self._delta_ui.clear()
        self._delta_iu.clear()
        self._delta_co.clear()
        self._n_delta = 0
        self._rebuilt()

    def _rebuilt(self) -> None:
        """The base matrices changed: derived structures are recomputed from them when next read."""
        self._version += 1
        self._profiles = None
        self._similar = None
        for listener in self.listeners:
            listener.on_compact()

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every interaction as (user, item, time) arrays, appended ones after the base ones."""
        users = np.repeat(np.arange(self.n_users), np.diff(self._ts.indptr))
        items, times = self._ts.indices.astype(np.int64), self._ts.data - 1.0
        extra = [(u, i, t - 1.0) for u, row in self._delta_ui.items() for i, t in row.items()]
        if not extra:
            return users, items, times
        du, di, dt = (np.asarray(col) for col in zip(*extra, strict=True))
        return np.concatenate([users, du]), np.concatenate([items, di]), np.concatenate([times, dt])

    # ----------------------------------------------------------------- lookups
    def user_items(self, user: int) -> np.ndarray:
        """Items the user interacted with (codes)."""
        base = self._ui.indices[self._ui.indptr[user] : self._ui.indptr[user + 1]]
        extra = self._delta_ui.get(user)
        return np.concatenate([base, np.fromiter(extra, np.int64)]) if extra else base.copy()

    def user_item_times(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's items and their timestamps, oldest first (read-only arrays).

        The last answer is kept until the graph changes: a request asks for one user's several
        times (curation, ranking channels, voters, rationales).
        """
        version, last = self._version, self._times
        if last is not None and last[0] == user and last[1] == version:
            return last[2], last[3]
        lo, hi = self._ts.indptr[user], self._ts.indptr[user + 1]
        items = self._ts.indices[lo:hi].astype(np.int64)
        times = self._ts.data[lo:hi] - 1.0
        extra = self._delta_ui.get(user)
        if extra:
            items = np.concatenate([items, np.fromiter(extra.keys(), np.int64)])
            times = np.concatenate([times, np.fromiter(extra.values(), np.float64) - 1.0])
        order = np.argsort(times, kind="stable")
        items, times = items[order], times[order]
        items.flags.writeable = times.flags.writeable = False  # shared by the callers
        self._times = (user, version, items, times)
        return items, times

    def item_users(self, item: int) -> np.ndarray:
        """Users who interacted with the item (codes)."""
        base = self._iu.indices[self._iu.indptr[item] : self._iu.indptr[item + 1]]
        extra = self._delta_iu.get(item)
        return np.concatenate([base, np.asarray(extra, np.int64)]) if extra else base.copy()

    def has(self, user: int, item: int) -> bool:
        """Whether the user interacted with the item."""
        if not (0 <= user < self.n_users and 0 <= item < self.n_items):
            raise IndexError(f"user {user} / item {item} outside the graph")
        if item in self._delta_ui.get(user, {}):
            return True
        ui = self._ui  # a CSR row lookup without scipy's per-call index validation
        return bool((ui.indices[ui.indptr[user] : ui.indptr[user + 1]] == item).any())

    @property
    def similar(self) -> sp.csr_matrix:
        """Pruned item-item cosine (top SIMILAR_K per item, shrunk), precomputed at index time.

        Appended interactions reach it when the deltas are merged (``compact``, amortised); the
        exact co-interaction counts (``co_counts``) always include them.
        """
        if self._similar is None:
            self._similar = similarity.item_cosine(self._ui, SIMILAR_K, SIMILAR_SHRINK)
        return self._similar

    def similar_scores(
        self, items: np.ndarray, weights: np.ndarray, targets: np.ndarray
    ) -> np.ndarray:
        """For each target item, sum_i w_i * similar[i, target]: ItemKNN over a weighted history."""
        cols, vals, pos = gather_rows(self.similar, items)
        w = np.asarray(weights, np.float64)
        dense = np.bincount(cols, weights=vals * w[pos], minlength=self.n_items)
        return dense[np.asarray(targets, np.int64)]

    def days_between(self, later: float, earlier: float) -> float:
        """Days from ``earlier`` to ``later`` (0 for datasets without a clock)."""
        if not self.has_clock:
            return 0.0
        return max(0.0, (later - earlier) / _SECONDS_PER_DAY)

    @property
    def n_interactions(self) -> int:
        """Interactions in the graph, including appended ones."""
        return int(self._ui.nnz + self._n_delta)

    def co_matrix(self) -> sp.csr_matrix:
        """Item x item co-interaction counts with the deltas merged."""
        self.compact()
        return self._co

    # ----------------------------------------------------------------- persistence
    def save(self, directory: Path) -> list[Path]:
        """Write the graph as .npz files (deltas merged first), each atomically; returns them."""
        self.compact()
        directory.mkdir(parents=True, exist_ok=True)
        matrices = {"ui_ts": self._ts, "attributes": self.attributes, "similar": self.similar}
        for name, matrix in matrices.items():
            atomic_write_with(directory / f"{name}.npz", partial(sp.save_npz, matrix=matrix))
        atomic_write_text(directory / "attributes.txt", "\n".join(self.attribute_names))
        atomic_write_text(directory / "meta.txt", f"has_clock={int(self.has_clock)}\n")
        return [directory / f for f in GRAPH_FILES]

    @classmethod
    def load(cls, directory: Path) -> InteractionGraph:
        """Read a graph written by ``save``."""
        ts = sp.load_npz(directory / "ui_ts.npz").tocsr()
        ui = ts.copy()
        ui.data[:] = 1.0
        attrs = sp.load_npz(directory / "attributes.npz").tocsr()
        names_text = (directory / "attributes.txt").read_text("utf-8")
        names = names_text.split("\n") if names_text else []
        has_clock = "has_clock=1" in (directory / "meta.txt").read_text("utf-8")
        graph = cls(ui.astype(np.float32), ts, attrs, names, has_clock)
        if (directory / "similar.npz").exists():
            graph._similar = sp.load_npz(directory / "similar.npz").tocsr()
        return graph
