"""The `domain_stats` node: statistics of a dataset's train graph, the input of rule writing."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from dataio.dataset import Dataset
from memory_store.features import neighbour_features
from memory_store.graph import InteractionGraph
from memory_store.vectors import MemoryVectors
from memory_store.workspace import aworkspace_for
from schemas.context import MemRecContext
from schemas.rules_state import RulesState
from schemas.ruleset import DomainStats, FeatureRanges

RANGE_USERS = 200  # users whose candidate neighbours the feature ranges are measured on


def feature_ranges(
    graph: InteractionGraph, vectors: MemoryVectors | None = None, n_users: int = RANGE_USERS
) -> FeatureRanges:
    """p10 / p50 / p90 of every curation feature by neighbour type, over a seeded user sample.

    The neighbours are every candidate the curation sees (no pre-cut), so a threshold written
    from these ranges means the same thing online.
    """
    rng = np.random.default_rng(0)
    active = np.flatnonzero(graph.user_degree > 0)
    size = min(n_users, len(active))
    sample: list[int] = rng.choice(active, size=size, replace=False).tolist() if size else []
    values: dict[str, dict[str, list[np.ndarray]]] = {"user": {}, "item": {}}
    for u in sorted(sample):
        users, items = neighbour_features(
            graph,
            u,
            user_vectors=vectors.users if vectors is not None else None,
            item_vectors=vectors.items if vectors is not None else None,
        )
        for nf in (users, items):
            for name, array in nf.features.items():
                values[nf.kind].setdefault(name, []).append(np.asarray(array, np.float64))
    out: FeatureRanges = {}
    for kind, features in values.items():
        out[kind] = {}
        for name, arrays in features.items():
            joined = np.concatenate(arrays) if arrays else np.zeros(0)
            if joined.size:
                out[kind][name] = [round(float(v), 4) for v in np.percentile(joined, [10, 50, 90])]
    return out


def domain_stats(
    dataset: Dataset, graph: InteractionGraph, vectors: MemoryVectors | None = None
) -> DomainStats:
    """Sparsity, degrees, co-interactions, recency spread, text richness and feature ranges."""
    ud = graph.user_degree
    idg = graph.item_degree
    co = graph.co_matrix()
    off_diag = co.data[co.indices != np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))]
    spreads = []
    for u in range(0, graph.n_users, max(1, graph.n_users // 500)):  # a sample is enough
        _, times = graph.user_item_times(u)
        if len(times) > 1:
            spreads.append(graph.days_between(times[-1], times[0]))
    tokens = [len(t.split()) for t in dataset.item_texts]
    attrs = [len(a) for a in dataset.item_attributes] if dataset.item_attributes else [0]
    n_int = graph.n_interactions
    return DomainStats(
        dataset=dataset.name,
        n_users=graph.n_users,
        n_items=graph.n_items,
        n_interactions=n_int,
        density=n_int / max(graph.n_users * graph.n_items, 1),
        user_degree_median=float(np.median(ud)),
        user_degree_p90=float(np.percentile(ud, 90)),
        item_degree_median=float(np.median(idg)),
        item_degree_p90=float(np.percentile(idg, 90)),
        co_count_median=float(np.median(off_diag)) if off_diag.size else 0.0,
        co_count_p90=float(np.percentile(off_diag, 90)) if off_diag.size else 0.0,
        recency_spread_days=float(np.median(spreads)) if spreads else 0.0,
        has_clock=graph.has_clock,
        text_tokens_mean=float(np.mean(tokens)) if tokens else 0.0,
        attributes_per_item=float(np.mean(attrs)),
        feature_ranges=feature_ranges(graph, vectors),
    )


async def domain_stats_node(state: RulesState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: compute the statistics of the context's dataset."""
    ws = await aworkspace_for(runtime.context)
    return {"stats": domain_stats(ws.dataset, ws.graph, ws.vectors)}
