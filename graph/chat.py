"""The chat graph: understand -> (feedback) -> retrieve -> recommend (a subgraph) -> respond.

``recommend`` is the compiled recommend graph added as a node: it shares the chat state's keys
(``user_id``, ``candidates``, ``request`` in; ``ranking``, ``facets``, ``neighbours``, ``usage``,
``notes`` out), so Studio's xray, ``/subgraphs``, streaming with ``subgraphs=True`` and pauses
inside it (the context's ``pause_before``) all see its curate, synthesize and rank nodes.

``graph`` is compiled without a checkpointer: the LangGraph server persists threads. Library and
CLI callers compile ``build_chat_graph()`` with their own checkpointer (SQLite for the terminal
chat, in-memory in tests) so a thread remembers the conversation.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph

from graph.background import schedule_propagation
from graph.recommend import build_recommend_graph
from nodes.feedback import make_feedback
from nodes.record import Schedule
from nodes.respond import respond
from nodes.retrieve import retrieve
from nodes.understand import understand
from schemas.chat_state import (
    ChatInput,
    ChatOutput,
    ChatState,
    Clarification,
    Constraints,
    Mention,
    ResolvedFeedback,
    Understanding,
)
from schemas.context import MemRecContext
from schemas.recommend_state import CuratedNeighbour, Feedback
from schemas.records import CallUsage, Facet, NeighbourSnippet, RankedItem

# Every model a chat thread's checkpoints hold (its own state and its recommend subgraph's);
# langgraph.json lists the same types (tests/test_chat_graph.py keeps the two in step).
CHECKPOINT_TYPES: tuple[type, ...] = (
    Understanding,
    Constraints,
    Mention,
    ResolvedFeedback,
    Clarification,
    CallUsage,
    RankedItem,
    Facet,
    CuratedNeighbour,
    NeighbourSnippet,
    Feedback,
)


def after_understand(state: ChatState) -> Literal["feedback", "retrieve", "respond"]:
    """Feedback is recorded first; empty messages, questions and dead ends go to the reply."""
    reading = state["understanding"]
    if reading.intent == "empty":
        return "respond"
    if state.get("matched_feedback"):
        return "feedback"
    if state.get("pending") is not None:
        return "respond"
    asked = reading.intent != "feedback" or state.get("skipped") or state.get("similar")
    if not asked and (state.get("unmatched") or state.get("already_rated")):
        return "respond"
    return "retrieve"


def after_feedback(state: ChatState) -> Literal["retrieve", "respond"]:
    """Fresh picks after feedback, unless a "which one did you mean?" question is open."""
    return "respond" if state.get("pending") is not None else "retrieve"


def after_retrieve(state: ChatState) -> Literal["recommend", "respond"]:
    """Rank what was retrieved; nothing retrieved, nothing to rank."""
    return "recommend" if state.get("candidates") else "respond"


def build_chat_graph(
    recommend: Any = None, schedule: Schedule = schedule_propagation
) -> StateGraph[ChatState, MemRecContext, ChatInput, ChatOutput]:
    """Wire the conversational path; ``recommend`` defaults to a pausable recommend subgraph."""
    if recommend is None:
        recommend = build_recommend_graph(schedule, pausable_nodes=True).compile(
            name="recommend"
        )
    builder = StateGraph(
        ChatState, context_schema=MemRecContext, input_schema=ChatInput, output_schema=ChatOutput
    )
    builder.add_node("understand", understand)
    builder.add_node("feedback", make_feedback(schedule))
    builder.add_node("retrieve", retrieve)
    builder.add_node("recommend", recommend)
    builder.add_node("respond", respond)
    builder.add_edge(START, "understand")
    builder.add_conditional_edges("understand", after_understand)
    builder.add_conditional_edges("feedback", after_feedback)
    builder.add_conditional_edges("retrieve", after_retrieve)
    builder.add_edge("recommend", "respond")
    builder.add_edge("respond", END)
    return builder


graph = build_chat_graph().compile(name="chat")


def checkpoint_serde() -> JsonPlusSerializer:
    """A checkpoint serializer that allows exactly the pydantic types the chat state holds."""
    return JsonPlusSerializer(
        allowed_msgpack_modules=[(t.__module__, t.__name__) for t in CHECKPOINT_TYPES]
    )
