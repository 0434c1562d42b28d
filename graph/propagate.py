"""The propagate graph (background): load_context -> reflect (one LMMem call) -> apply_patches.

A replayed or write-disabled interaction loads with a skip reason and goes straight to
``apply_patches``, which reports the skip and settles the job: no model call, no write.
"""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from nodes.apply_patches import apply_patches
from nodes.load_context import load_context
from nodes.reflect import make_reflect
from schemas.context import MemRecContext
from schemas.propagate_state import PropagateInput, PropagateOutput, PropagateState
from schemas.roles import LMMem


def after_load(state: PropagateState) -> Literal["reflect", "apply_patches"]:
    """Skip the model call when nothing is to be propagated (replayed, collaborative write off)."""
    return "apply_patches" if state["loaded"].skip_reason else "reflect"


def build_propagate_graph(
    lmmem: LMMem | None = None,
) -> StateGraph[PropagateState, MemRecContext, PropagateInput, PropagateOutput]:
    """Wire the background write path (``lmmem`` replaces the context's role, for fakes)."""
    builder = StateGraph(
        PropagateState,
        context_schema=MemRecContext,
        input_schema=PropagateInput,
        output_schema=PropagateOutput,
    )
    builder.add_node("load_context", load_context)
    builder.add_node("reflect", make_reflect(lmmem))
    builder.add_node("apply_patches", apply_patches)
    builder.add_edge(START, "load_context")
    builder.add_conditional_edges("load_context", after_load)
    builder.add_edge("reflect", "apply_patches")
    builder.add_edge("apply_patches", END)
    return builder


graph = build_propagate_graph().compile(name="propagate")
