"""Per-user item sequences in time order, and the vectorised lookups scorers build on them.

The offline ranker's index (``memory_store/ranker_index.py``), its index-time tuning and the strong
baselines of ``evaluation/strong.py`` all score (history item, candidate) pairs over these arrays,
so they share one definition of a history, a recency weight and a popularity prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Ragged:
    """Per-user item sequences as one flat array: user ``u`` is ``items[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray
    items: np.ndarray
    n_items: int

    @property
    def n_users(self) -> int:
        """Number of sequences."""
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Length of every sequence."""
        return np.diff(self.indptr)

    def history(self, user: int) -> np.ndarray:
        """One user's items, oldest first."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def owner(self) -> np.ndarray:
        """The user of every flat entry."""
        return np.repeat(np.arange(self.n_users), self.lengths)

    def from_end(self) -> np.ndarray:
        """Position of every entry counted from the end of its sequence (last item = 0)."""
        return np.repeat(self.indptr[1:], self.lengths) - 1 - np.arange(len(self.items))

    def matrix(self, weights: np.ndarray | None = None) -> sp.csr_matrix:
        """User x item CSR: binary, or the given per-entry weights (a repeated item sums)."""
        data = np.ones(len(self.items)) if weights is None else np.asarray(weights, np.float64)
        m = sp.csr_matrix(
            (data, (self.owner(), self.items)), shape=(self.n_users, self.n_items), dtype=np.float64
        )
        m.sum_duplicates()
        if weights is None:
            m.data[:] = 1.0
        return m


def as_ragged(sequences: Sequence[Sequence[int]] | Ragged, n_items: int) -> Ragged:
    """Validate per-user item sequences (time order) and pack them into a ``Ragged``."""
    if isinstance(sequences, Ragged):
        if sequences.n_items != n_items:
            raise ValueError(f"sequences have n_items={sequences.n_items}, expected {n_items}")
        return sequences
    lengths = np.fromiter((len(s) for s in sequences), np.int64, len(sequences))
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = (
        np.concatenate([np.asarray(s, np.int64) for s in sequences])
        if len(sequences)
        else np.zeros(0, np.int64)
    )
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(
            f"item codes must lie in [0, {n_items}); found {items.min()}..{items.max()}. "
            "Encode items densely (0 .. n_items-1) before fitting"
        )
    return Ragged(indptr, items, n_items)


def recency_weights(from_end: np.ndarray, tau: float) -> np.ndarray:
    """``exp(-from_end / tau)``; ``tau = inf`` weighs every position 1."""
    from_end = np.asarray(from_end, np.float64)
    if not np.isfinite(tau):
        return np.ones(from_end.shape)
    return np.exp(-from_end / float(tau))


def item_counts(seqs: Ragged) -> np.ndarray:
    """Interactions per item (a user repeating an item counts once)."""
    return np.asarray(seqs.matrix().sum(axis=0)).ravel()


def normalised_popularity(popularity: np.ndarray, transform: str = "log") -> np.ndarray:
    """Popularity in [0, 1]: ``log1p(p) / log1p(max)`` (``log``) or ``p / max`` (``linear``)."""
    pop = np.asarray(popularity, np.float64)
    top = float(pop.max()) if pop.size else 0.0
    if top <= 0:
        return np.zeros_like(pop)
    if transform == "log":
        return np.log1p(pop) / np.log1p(top)
    if transform == "linear":
        return pop / top
    raise ValueError(f"popularity transform must be 'log' or 'linear', not {transform!r}")


class PairLookup:
    """Values of a sparse matrix at arbitrary (row, column) pairs, vectorised (sorted keys)."""

    def __init__(self, matrix: sp.spmatrix | sp.sparray) -> None:
        m = sp.csr_matrix(matrix)
        m.sum_duplicates()
        m.sort_indices()
        self.n_cols = m.shape[1]
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        self.keys = rows * self.n_cols + m.indices.astype(np.int64)
        self.values = m.data

    def get(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``matrix[rows[j], cols[j]]`` for every j (0 where nothing is stored)."""
        query = np.asarray(rows, np.int64) * self.n_cols + np.asarray(cols, np.int64)
        out = np.zeros(query.shape, dtype=np.float64)
        if not len(self.keys):
            return out
        at = np.searchsorted(self.keys, query)
        at_safe = np.minimum(at, len(self.keys) - 1)
        found = (at < len(self.keys)) & (self.keys[at_safe] == query)
        out[found] = self.values[at_safe[found]]
        return out


@dataclass(frozen=True)
class HistoryPairs:
    """Every (history entry, candidate) pair of a batch of users: the unit of pair scoring.

    ``row`` is the query row (user of the batch), ``col`` the candidate column, ``item`` the
    history item, ``cand`` the candidate item and ``from_end`` the history position from the end.
    """

    row: np.ndarray
    col: np.ndarray
    item: np.ndarray
    cand: np.ndarray
    from_end: np.ndarray
    shape: tuple[int, int]

    def total(self, values: np.ndarray) -> np.ndarray:
        """Sum of per-pair ``values`` into the ``(n_users, n_cand)`` score matrix."""
        flat = self.row * self.shape[1] + self.col
        size = self.shape[0] * self.shape[1]
        return np.bincount(flat, weights=values, minlength=size).reshape(self.shape)


def history_pairs(
    seqs: Ragged, users: np.ndarray, cands: np.ndarray, last: int | None = None
) -> HistoryPairs:
    """Pairs of each user's history entries (the last ``last`` only, if given) and candidates."""
    users = np.asarray(users, np.int64)
    cands = np.asarray(cands, np.int64)
    starts, ends = seqs.indptr[users], seqs.indptr[users + 1]
    if last is not None:
        starts = np.maximum(starts, ends - last)
    lengths = ends - starts
    row_of_entry = np.repeat(np.arange(users.size), lengths)
    offsets = np.cumsum(lengths) - lengths
    flat = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
    from_end = np.repeat(ends, lengths) - 1 - flat
    m = cands.shape[1]
    row = np.repeat(row_of_entry, m)
    col = np.tile(np.arange(m), len(flat))
    return HistoryPairs(
        row=row,
        col=col,
        item=np.repeat(seqs.items[flat], m),
        cand=cands[row, col],
        from_end=np.repeat(from_end, m),
        shape=(users.size, m),
    )


def gather(m: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column indices, values and row positions of several CSR rows (plain numpy, no scipy)."""
    rows = np.asarray(rows, np.int64)
    starts = m.indptr[rows]
    lengths = m.indptr[rows + 1] - starts
    pos = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.cumsum(lengths) - lengths
    flat = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
    return m.indices[flat], m.data[flat], pos


def row_dot(m: sp.csr_matrix, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``m[rows[j]] . vector`` for every j."""
    cols, vals, pos = gather(m, rows)
    return np.bincount(pos, weights=vals * vector[cols], minlength=len(rows))


def dense_rows(m: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_j weights[j] * m[rows[j]]`` as a dense vector of length ``m.shape[1]``."""
    cols, vals, pos = gather(m, rows)
    w = np.asarray(weights, np.float64)[pos]
    return np.bincount(cols, weights=vals * w, minlength=m.shape[1])


def normalise_rows(m: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (empty rows stay empty)."""
    m = sp.csr_matrix(m, dtype=np.float64)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return (sp.diags(1.0 / norms) @ m).tocsr()


def row_pair_dots(
    left: sp.csr_matrix, rows: np.ndarray, right: sp.csr_matrix, cols: np.ndarray
) -> np.ndarray:
    """``left[rows[j]] . right[cols[j]]`` for every j, by sparse lookups (no dense rows)."""
    features, values, owner = gather(sp.csr_matrix(right), cols)
    dots = PairLookup(left).get(np.asarray(rows)[owner], features) * values
    return np.bincount(owner, weights=dots, minlength=len(cols))
