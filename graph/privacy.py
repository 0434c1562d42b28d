"""The privacy graph (admins only): delete a user, or record an opt-out, in the serving process."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from graph import server_hygiene  # noqa: F401 - starts the dev server's checkpoint sweep
from nodes.forget import forget
from nodes.forget_threads import forget_threads
from schemas.context import MemRecContext
from schemas.privacy_state import PrivacyInput, PrivacyOutput, PrivacyState


def build_privacy_graph() -> StateGraph[PrivacyState, MemRecContext, PrivacyInput, PrivacyOutput]:
    """``forget`` (the store), then ``forget_threads`` (the server's threads of the user)."""
    builder = StateGraph(
        PrivacyState,
        context_schema=MemRecContext,
        input_schema=PrivacyInput,
        output_schema=PrivacyOutput,
    )
    builder.add_node("forget", forget)
    builder.add_node("forget_threads", forget_threads)
    builder.add_edge(START, "forget")
    builder.add_edge("forget", "forget_threads")
    builder.add_edge("forget_threads", END)
    return builder


graph = build_privacy_graph().compile(name="privacy")
