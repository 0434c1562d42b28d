"""The counting side of the interaction graph: co-interaction counts and users shared by items.

A mixin of :class:`memory_store.graph.InteractionGraph` (which owns the matrices and the deltas of
appended interactions); every count includes the appended interactions without merging them.
"""

from __future__ import annotations

from array import array

import numpy as np
import scipy.sparse as sp

from memory_store.sparse_rows import gather_rows


class CoCounts:
    """Co-counts, item cosines and shared-item counts over the graph's matrices and deltas."""

    n_users: int
    n_items: int
    item_degree: np.ndarray
    _co: sp.csr_matrix  # item x item co-interaction counts of the base graph
    _iu: sp.csr_matrix  # item x user
    _ui: sp.csr_matrix  # user x item
    _delta_ui: dict[int, dict[int, float]]
    _delta_iu: dict[int, list[int]]
    _delta_co: dict[int, array]

    def _delta_co_row(self, item: int) -> np.ndarray:
        raise NotImplementedError  # InteractionGraph's

    def co_counts(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Weighted sum of co-interaction rows: for every item j, sum_i w_i * C[i, j]."""
        w = np.ones(len(items)) if weights is None else np.asarray(weights, np.float64)
        cols, vals, pos = gather_rows(self._co, items)
        out = np.bincount(cols, weights=vals * w[pos], minlength=self.n_items).astype(np.float64)
        if self._delta_co:
            for i, wi in zip(np.asarray(items).tolist(), w.tolist(), strict=True):
                if i in self._delta_co:
                    np.add.at(out, self._delta_co_row(i), wi)
        return out

    def item_cosine(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """For every item j, sum_i w_i * cos(i, j) with cos = C[i,j] / sqrt(d_i d_j)."""
        deg = np.maximum(self.item_degree, 1.0)
        w = np.ones(len(items)) if weights is None else np.asarray(weights, np.float64)
        return self.co_counts(items, w / np.sqrt(deg[items])) / np.sqrt(deg)

    def item_user_entries(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (user, position in ``items``) edge of the ``items``, appended ones included."""
        items = np.asarray(items, np.int64)
        users, _, pos = gather_rows(self._iu, items)
        if self._delta_iu:
            extra_u, extra_p = [users], [pos]
            for r, i in enumerate(items.tolist()):
                appended = self._delta_iu.get(i)
                if appended:
                    extra_u.append(np.asarray(appended, users.dtype))
                    extra_p.append(np.full(len(appended), r, np.int64))
            users, pos = np.concatenate(extra_u), np.concatenate(extra_p)
        return users, pos

    def co_within(
        self, items: np.ndarray, entries: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each of the distinct ``items`` j, its co-counts and cosines summed over ``items``.

        ``co_counts(items)[items]`` and ``item_cosine(items)[items]`` through the items' users:
        ``sum_i co(i, j)`` is the sum, over j's users, of how many of ``items`` each one has (one
        entry per edge gathered, where co-count rows hold one per co-occurring pair).
        ``entries``: ``item_user_entries(items)`` when the caller already has them.
        """
        items = np.asarray(items, np.int64)
        n = len(items)
        users, pos = self.item_user_entries(items) if entries is None else entries
        if not len(users):
            return np.zeros(n), np.zeros(n)
        deg = np.sqrt(np.maximum(self.item_degree[items], 1.0))
        if self.n_users <= 16 * len(users):  # a dense count over every user is the cheaper
            inverse = users
        else:
            _, inverse = np.unique(users, return_inverse=True)
        held = np.bincount(inverse)  # per user: how many of ``items`` they have
        weighted = np.bincount(inverse, weights=1.0 / deg[pos])  # ... each over sqrt(degree)
        co = np.bincount(pos, weights=held[inverse], minlength=n).astype(np.float64)
        cos = np.bincount(pos, weights=weighted[inverse], minlength=n) / deg
        return co, cos

    def shared_counts(
        self,
        items: np.ndarray,
        weights: np.ndarray | None = None,
        entries: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """For every user, how many of ``items`` they interacted with (or their summed weights).

        ``entries``: ``item_user_entries`` of the same items (in any order, unweighted only).
        """
        if entries is not None and weights is None:
            return np.bincount(entries[0], minlength=self.n_users).astype(np.float64)
        w = np.ones(len(items)) if weights is None else np.asarray(weights, np.float64)
        cols, _, pos = gather_rows(self._iu, items)
        out = np.bincount(cols, weights=w[pos], minlength=self.n_users).astype(np.float64)
        if self._delta_iu:
            for i, wi in zip(np.asarray(items).tolist(), w.tolist(), strict=True):
                extra = self._delta_iu.get(i)
                if extra:
                    np.add.at(out, np.asarray(extra, np.int64), wi)
        return out

    def votes(self, users: np.ndarray, weights: np.ndarray, items: np.ndarray) -> np.ndarray:
        """For each of ``items``, the summed weight of ``users`` who interacted with it."""
        if len(users) == 0:
            return np.zeros(len(items))
        w = np.asarray(weights, np.float64)
        cols, _, pos = gather_rows(self._ui, users)
        dense = np.bincount(cols, weights=w[pos], minlength=self.n_items)
        for row, u in enumerate(users.tolist()):
            for i in self._delta_ui.get(u, ()):
                dense[i] += w[row]
        return dense[np.asarray(items, np.int64)]
