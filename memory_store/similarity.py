"""Item-item similarity of a binary interaction matrix (shrunk cosine, top-k per item).

The interaction graph precomputes it for curation and retrieval; the ItemKNN baseline of
``evaluation/baselines.py`` uses the same function, so both score with one definition. The
graph's item x attribute matrix is built here too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def as_binary_csr(train: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Return ``train`` as a float32 CSR matrix with every stored interaction set to 1."""
    if not sp.issparse(train):
        raise TypeError(
            f"train must be a scipy.sparse user x item matrix, got {type(train).__name__}"
        )
    csr = sp.csr_matrix(train, dtype=np.float32, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.data[:] = 1.0
    return csr


def _top_k_per_row(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a CSR matrix (ties: lower column first)."""
    matrix.sort_indices()
    counts = np.diff(matrix.indptr)
    rows = np.repeat(np.arange(matrix.shape[0]), counts)
    order = np.lexsort((-matrix.data, rows))
    position = np.arange(order.size) - matrix.indptr[rows[order]]
    keep = np.sort(order[position < k])  # back to row-major order, so CSR arrays stay valid
    indptr = np.concatenate([[0], np.cumsum(np.minimum(counts, k))])
    return sp.csr_matrix((matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape)


def item_cosine(train: sp.csr_matrix, k: int, shrink: float = 0.0) -> sp.csr_matrix:
    """Item x item shrunk cosine similarity of a binary matrix, ``k`` neighbours kept per row."""
    binary = as_binary_csr(train)
    co = (binary.T @ binary).tocsr().astype(np.float64)
    norms = np.sqrt(co.diagonal())
    co.setdiag(0.0)
    co.eliminate_zeros()
    rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
    co.data = co.data / (norms[rows] * norms[co.indices] + shrink)
    return _top_k_per_row(co, k)


def attribute_matrix(
    item_attributes: Sequence[Sequence[str]], n_items: int
) -> tuple[sp.csr_matrix, list[str]]:
    """Item x attribute matrix with L2-normalised rows, and the attribute names."""
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, attrs in enumerate(item_attributes):
        for a in dict.fromkeys(attrs):
            rows.append(i)
            cols.append(vocab.setdefault(a, len(vocab)))
    m = sp.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)), shape=(n_items, len(vocab)))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    m = sp.diags(1.0 / norms) @ m
    return m.tocsr(), list(vocab)
