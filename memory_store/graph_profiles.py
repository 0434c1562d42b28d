"""The attribute side of the interaction graph: item attribute profiles and users' profiles.

A mixin of :class:`memory_store.graph.InteractionGraph` (which owns the matrices); users' profiles
include the attribute rows of their appended interactions without merging the deltas.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from memory_store.sparse_rows import gather_rows


class AttributeProfiles:
    """Attribute profiles and cosines over the graph's item x attribute matrix."""

    attributes: sp.csr_matrix  # item x attribute, rows L2-normalised
    _ui: sp.csr_matrix
    _profiles: tuple[sp.csr_matrix, np.ndarray] | None  # base user x attribute sums, row squares
    _delta_ui: dict[int, dict[int, float]]

    def attribute_profile(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """L2-normalised attribute vector of a set of items (dense, one entry per attribute)."""
        if len(items) == 0 or self.attributes.shape[1] == 0:
            return np.zeros(self.attributes.shape[1])
        w = np.ones(len(items)) if weights is None else np.asarray(weights, np.float64)
        cols, vals, pos = gather_rows(self.attributes, items)
        vec = np.bincount(cols, weights=vals * w[pos], minlength=self.attributes.shape[1])
        norm = np.linalg.norm(vec)
        return vec / norm if norm > 0 else vec

    def _base_profiles(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """User x attribute sums of the base graph and each row's squared norm, computed once."""
        base = self._profiles
        if base is None:
            sums = (self._ui @ self.attributes).tocsr()
            rows = np.repeat(np.arange(sums.shape[0]), np.diff(sums.indptr))
            squares = np.bincount(rows, weights=sums.data**2, minlength=sums.shape[0])
            base = self._profiles = (sums, squares)
        return base

    def _profile_entries(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """Column, value and row position of every attribute sum in the users' profiles.

        The base graph's user x attribute sums (computed once), then, for users with appended
        interactions, the attribute rows of the appended items, all gathered at once; the last
        value is where those appended entries start (a row's columns repeat only past it).
        """
        cols, vals, pos = gather_rows(self._base_profiles()[0], users)
        rows, items = [], []
        if self._delta_ui:
            for row, u in enumerate(users.tolist()):
                extra = self._delta_ui.get(u)
                if extra:
                    rows += [row] * len(extra)
                    items += list(extra)
        if not items:
            return cols, vals, pos, len(cols)
        dcols, dvals, dpos = gather_rows(self.attributes, np.asarray(items, np.int64))
        drows = np.asarray(rows, np.int64)[dpos]
        return (
            np.concatenate([cols, dcols]),
            np.concatenate([vals, dvals]).astype(np.float64),
            np.concatenate([pos, drows]),
            len(cols),
        )

    def user_profiles(self, users: np.ndarray) -> np.ndarray:
        """L2-normalised attribute profiles of several users at once (dense rows)."""
        if self.attributes.shape[1] == 0 or len(users) == 0:
            return np.zeros((len(users), self.attributes.shape[1]))
        cols, vals, pos, _ = self._profile_entries(np.asarray(users, np.int64))
        prof = np.zeros((len(users), self.attributes.shape[1]))
        np.add.at(prof, (pos, cols), vals)
        norms = np.linalg.norm(prof, axis=1)
        norms[norms == 0] = 1.0
        return prof / norms[:, None]

    def profile_cosines(self, users: np.ndarray, profile: np.ndarray) -> np.ndarray:
        """Cosine of each user's attribute profile with a unit ``profile``, without dense rows.

        From the base profiles and their precomputed norms; the users with appended interactions
        are then recomputed exactly (``_appended_cosines``).
        """
        if self.attributes.shape[1] == 0 or len(users) == 0:
            return np.zeros(len(users))
        users = np.asarray(users, np.int64)
        sums, squares = self._base_profiles()
        if 4 * len(users) >= sums.shape[0]:  # a good share of the users: one product over all
            dots = (sums @ profile)[users]
        else:
            cols, vals, pos = gather_rows(sums, users)
            dots = np.bincount(pos, weights=vals * profile[cols], minlength=len(users))
        norms = np.sqrt(squares[users])
        out = dots / np.where(norms > 0, norms, 1.0)
        if self._delta_ui:
            appended = [r for r, u in enumerate(users.tolist()) if u in self._delta_ui]
            if appended:
                rows = np.asarray(appended, np.int64)
                out[rows] = self._appended_cosines(users[rows], profile)
        return out

    def _appended_cosines(self, users: np.ndarray, profile: np.ndarray) -> np.ndarray:
        """``profile_cosines`` for users with appended interactions (repeated columns summed)."""
        cols, vals, pos, n_base = self._profile_entries(users)
        dots = np.bincount(pos, weights=vals * profile[cols], minlength=len(users))
        flat = pos * self.attributes.shape[1] + cols
        keys, inverse = np.unique(flat, return_inverse=True)
        summed = np.bincount(inverse, weights=vals)
        rows = keys // self.attributes.shape[1]
        norms = np.sqrt(np.bincount(rows, weights=summed**2, minlength=len(users)))
        return dots / np.where(norms > 0, norms, 1.0)

    def attribute_dot(self, items: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """For each item, its (normalised) attribute row dotted with ``vector``."""
        cols, vals, pos = gather_rows(self.attributes, items)
        return np.bincount(pos, weights=vals * vector[cols], minlength=len(items))
