"""Cheap graph features of a user's collaborative neighbours, the input of curation rules.

User neighbours are the users who share items with the user (2-hop in the memory graph); item
neighbours are the items the user interacted with (1-hop), whose memories carry what other users
brought to them. Every feature is an array aligned with the neighbour codes (see
``schemas.ruleset.FEATURES`` for their meaning).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from memory_store.graph import InteractionGraph

RECENCY_DAYS = 180.0  # half-life-like scale of the recency feature, in days
POSITION_SCALE = 20.0  # the same for datasets without a clock, in sequence positions
ITEM_POOL = 200  # item neighbours considered: the user's most recent items
# Every user sharing an item is a candidate neighbour, so the rules (not a co-count pre-cut) decide
# who matters. Only a user with more than USER_POOL co-occurring users is bounded, to keep the
# online cost flat: the STRONG_USERS with the most shared items plus a seeded uniform sample of all
# the others, so low-overlap peers keep a chance to be curated.
USER_POOL = 2048
STRONG_USERS = 256


@dataclass
class NeighbourFeatures:
    """Feature arrays for the candidate neighbours of one kind."""

    kind: str
    codes: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)


def _cosine_rows(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    if matrix.size == 0:
        return np.zeros(matrix.shape[0])
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(vector) or 1.0)
    norms[norms == 0] = 1.0
    return (matrix @ vector) / norms


def _cosine_to(
    matrix: np.ndarray, norms: np.ndarray | None, codes: np.ndarray, vector: np.ndarray
) -> np.ndarray:
    """``_cosine_rows(matrix[codes], vector)`` with the rows' norms known (``MemoryVectors.norms``).

    When the codes are a good share of the rows, one product over the whole matrix is cheaper
    than gathering them (the rows are wide).
    """
    if norms is None:
        return _cosine_rows(matrix[codes], vector)
    if not len(codes):
        return np.zeros(0)
    dots = (matrix @ vector)[codes] if 4 * len(codes) >= len(matrix) else matrix[codes] @ vector
    scale = norms[codes] * (np.linalg.norm(vector) or 1.0)
    scale[scale == 0] = 1.0
    return dots / scale


def bounded_pool(shared: np.ndarray, user: int, pool: int = USER_POOL) -> np.ndarray:
    """Codes of the users with shared items: all of them, or a bounded, seeded mix (see above)."""
    positive = np.flatnonzero(shared > 0)
    if len(positive) <= pool:
        return positive
    strong = min(STRONG_USERS, pool)
    top = np.argpartition(-shared[positive], strong - 1)[:strong]
    rest = np.delete(positive, top)
    sample = np.random.default_rng(user).choice(rest, size=pool - strong, replace=False)
    return np.concatenate([positive[top], sample])


def user_neighbour_features(
    graph: InteractionGraph,
    user: int,
    *,
    pool: int = USER_POOL,
    user_vectors: np.ndarray | None = None,
    user_norms: np.ndarray | None = None,
    excluded: Collection[int] = (),
    entries: tuple[np.ndarray, np.ndarray] | None = None,
) -> NeighbourFeatures:
    """Features of the users sharing items with ``user`` (bounded by ``bounded_pool``).

    ``entries``: ``graph.item_user_entries`` of the user's items (any order), when at hand.
    """
    history = graph.user_items(user)
    shared = (
        graph.shared_counts(history, entries=entries) if len(history) else np.zeros(graph.n_users)
    )
    shared[user] = 0.0
    if excluded:
        shared[np.fromiter(excluded, np.int64)] = 0.0
    positive = bounded_pool(shared, user, pool)
    codes = positive[np.lexsort((positive, -shared[positive]))]
    co = shared[codes]
    deg_u = max(graph.user_degree[user], 1.0)
    deg_v = graph.user_degree[codes]
    if graph.has_clock:
        gap = graph.user_last_ts[user] - graph.user_last_ts[codes]
        inactive = np.maximum(gap, 0.0) / 86400.0
    else:
        inactive = np.zeros(len(codes))
    profile_u = graph.attribute_profile(history)
    text = graph.profile_cosines(codes, profile_u)
    memory = (
        _cosine_to(user_vectors, user_norms, codes, user_vectors[user])
        if user_vectors is not None and len(codes)
        else np.zeros(len(codes))
    )
    return NeighbourFeatures(
        "user",
        codes,
        {
            "co_count": co,
            "co_share": co / deg_u,
            "overlap": co / np.maximum(deg_u + deg_v - co, 1.0),
            "degree": np.log1p(deg_v),
            "degree_share": deg_v / max(float(graph.user_degree.max()), 1.0),
            "inactive_days": inactive,
            "recency": np.exp(-inactive / RECENCY_DAYS),
            "text_overlap": text,
            "memory_sim": memory,
        },
    )


def recent_items(
    graph: InteractionGraph, user: int
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The user's ITEM_POOL most recent items, their times and ``item_user_entries``."""
    codes, times = graph.user_item_times(user)
    codes, times = codes[-ITEM_POOL:], times[-ITEM_POOL:]  # bounded cost at any degree
    return codes, times, graph.item_user_entries(codes)


def neighbour_features(
    graph: InteractionGraph,
    user: int,
    *,
    user_vectors: np.ndarray | None = None,
    user_norms: np.ndarray | None = None,
    item_vectors: np.ndarray | None = None,
    excluded: Collection[int] = (),
) -> tuple[NeighbourFeatures, NeighbourFeatures]:
    """``user_neighbour_features`` and ``item_neighbour_features`` of ``user`` together.

    The items' users are gathered once when the recent items are all of the user's items.
    """
    recent = recent_items(graph, user)
    every = len(recent[0]) == len(graph.user_items(user))  # not cut to ITEM_POOL
    users = user_neighbour_features(
        graph,
        user,
        user_vectors=user_vectors,
        user_norms=user_norms,
        excluded=excluded,
        entries=recent[2] if every else None,
    )
    user_vector = user_vectors[user] if user_vectors is not None else None
    items = item_neighbour_features(
        graph, user, user_vector=user_vector, item_vectors=item_vectors, recent=recent
    )
    return users, items


def item_neighbour_features(
    graph: InteractionGraph,
    user: int,
    *,
    user_vector: np.ndarray | None = None,
    item_vectors: np.ndarray | None = None,
    recent: tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None,
) -> NeighbourFeatures:
    """Features of the user's most recent items (how central and recent each one is).

    ``recent``: ``recent_items(graph, user)`` when the caller already has it.
    """
    codes, times, entries = recent_items(graph, user) if recent is None else recent
    n = len(codes)
    if n == 0:
        return NeighbourFeatures("item", codes, {})
    co_sum, cos_sum = graph.co_within(codes, entries)  # a user's items are distinct
    co = co_sum - graph.item_degree[codes]
    cos = (cos_sum - 1.0) / max(n - 1, 1)
    if graph.has_clock:
        inactive = np.maximum(times[-1] - times, 0.0) / 86400.0
        recency = np.exp(-inactive / RECENCY_DAYS)
    else:
        steps = np.arange(n - 1, -1, -1, dtype=np.float64)
        inactive = np.zeros(n)
        recency = np.exp(-steps / POSITION_SCALE)
    profile = graph.attribute_profile(codes)
    text = graph.attribute_dot(codes, profile) if profile.size else np.zeros(n)
    memory = (
        _cosine_rows(item_vectors[codes], user_vector)
        if item_vectors is not None and user_vector is not None
        else np.zeros(n)
    )
    return NeighbourFeatures(
        "item",
        codes,
        {
            "co_count": co,
            "co_share": co / max(n - 1, 1),
            "overlap": cos,
            "degree": np.log1p(graph.item_degree[codes]),
            "degree_share": graph.item_degree[codes] / max(float(graph.item_degree.max()), 1.0),
            "inactive_days": inactive,
            "recency": recency,
            "text_overlap": text,
            "memory_sim": memory,
        },
    )
