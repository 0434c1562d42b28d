"""The `domain_stats` node: statistics of a dataset's train graph, the input of rule writing."""

from __future__ import annotations

from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from dataio.dataset import Dataset
from memory_store.graph import InteractionGraph
from memory_store.workspace import aworkspace_for
from schemas.context import MemRecContext
from schemas.rules_state import RulesState
from schemas.ruleset import DomainStats


def domain_stats(dataset: Dataset, graph: InteractionGraph) -> DomainStats:
    """Sparsity, degree distributions, co-interaction counts, recency spread and text richness."""
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
    )


async def domain_stats_node(state: RulesState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: compute the statistics of the context's dataset."""
    ws = await aworkspace_for(runtime.context)
    return {"stats": domain_stats(ws.dataset, ws.graph)}
