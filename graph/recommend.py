"""The recommend graph: curate -> synthesize -> rank, then the post-response branch `record`.

`record` hands what it recorded to ``schedule`` (default: ``graph/background.py``'s background
propagation through the propagate graph), never waiting for it.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph

from graph.background import schedule_propagation
from nodes.curate import curate
from nodes.pause import pausable
from nodes.rank import rank
from nodes.record import Schedule, make_record
from nodes.synthesize import synthesize
from schemas.context import MemRecContext
from schemas.recommend_state import RecommendInput, RecommendOutput, RecommendState


def after_rank(state: RecommendState) -> Literal["record", "__end__"]:
    """Post-response branch: feedback in the input is recorded, then propagated in background."""
    return "record" if state.get("feedback") else "__end__"


def build_recommend_graph(
    schedule: Schedule = schedule_propagation, *, pausable_nodes: bool = False
) -> StateGraph[RecommendState, MemRecContext, RecommendInput, RecommendOutput]:
    """Wire the online path (two model calls at most: synthesize and rank).

    ``pausable_nodes``: as a subgraph, stop before the nodes the context's ``pause_before``
    names (``nodes/pause.py``), since run-level interrupts do not reach inside subgraphs.
    """
    wrap: Any = pausable if pausable_nodes else (lambda _name, node: node)
    builder = StateGraph(
        RecommendState,
        context_schema=MemRecContext,
        input_schema=RecommendInput,
        output_schema=RecommendOutput,
    )
    builder.add_node("curate", wrap("curate", curate))
    builder.add_node("synthesize", wrap("synthesize", synthesize))
    builder.add_node("rank", wrap("rank", rank))
    builder.add_node("record", make_record(schedule))
    builder.add_edge(START, "curate")
    builder.add_edge("curate", "synthesize")
    builder.add_edge("synthesize", "rank")
    builder.add_conditional_edges("rank", after_rank)
    builder.add_edge("record", END)
    return builder


graph = build_recommend_graph().compile(name="recommend")
