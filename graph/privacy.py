"""The privacy graph (admins only): delete a user, or record an opt-out, in the serving process."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from nodes.forget import forget
from schemas.context import MemRecContext
from schemas.privacy_state import PrivacyInput, PrivacyOutput, PrivacyState


def build_privacy_graph() -> StateGraph[PrivacyState, MemRecContext, PrivacyInput, PrivacyOutput]:
    """One node: ``forget``."""
    builder = StateGraph(
        PrivacyState,
        context_schema=MemRecContext,
        input_schema=PrivacyInput,
        output_schema=PrivacyOutput,
    )
    builder.add_node("forget", forget)
    builder.add_edge(START, "forget")
    builder.add_edge("forget", END)
    return builder


graph = build_privacy_graph().compile(name="privacy")
