"""The propagate graph (background): load_context -> reflect (one LMMem call) -> apply_patches."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graph.context import MemRecContext
from nodes.apply_patches import PropagationReport, apply_patches
from nodes.load_context import LoadedContext, load_context
from nodes.reflect import reflect
from nodes.roles import CallUsage, InteractionEvent, PropagationResult


class PropagateInput(TypedDict, total=False):
    """What starts a propagation: an interaction id from the event log, or the full event."""

    interaction_id: str  # a recorded interaction (its event is read from the log)
    event: InteractionEvent | dict[str, Any] | None  # or the event itself


class PropagateOutput(TypedDict, total=False):
    """What a propagation returns."""

    report: PropagationReport  # writes, skips, dropped / refused patches, the call's usage


class PropagateState(PropagateInput, PropagateOutput, total=False):
    """Internal state between the three nodes."""

    loaded: LoadedContext  # the event, its memories and the chosen neighbours
    result: PropagationResult  # the one LMMem call's answer
    usage: CallUsage  # what that call cost


def after_load(state: PropagateState) -> Literal["reflect", "apply_patches"]:
    """Skip the model call when nothing is to be propagated (collaborative write off)."""
    return "apply_patches" if state["loaded"].skip_reason else "reflect"


def build_propagate_graph() -> StateGraph[
    PropagateState, MemRecContext, PropagateInput, PropagateOutput
]:
    """Wire the background write path."""
    builder = StateGraph(
        PropagateState,
        context_schema=MemRecContext,
        input_schema=PropagateInput,
        output_schema=PropagateOutput,
    )
    builder.add_node("load_context", load_context)
    builder.add_node("reflect", reflect)
    builder.add_node("apply_patches", apply_patches)
    builder.add_edge(START, "load_context")
    builder.add_conditional_edges("load_context", after_load)
    builder.add_edge("reflect", "apply_patches")
    builder.add_edge("apply_patches", END)
    return builder


graph = build_propagate_graph().compile(name="propagate")
