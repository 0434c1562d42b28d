"""State schemas of the chat graph: a messages state plus what one turn understood and picked."""

from __future__ import annotations

from typing import Annotated, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from schemas.recommend_state import CuratedNeighbour, merge_usage
from schemas.records import CallUsage, Facet, RankedItem

Intent = Literal["recommend", "feedback", "clarify", "empty", "other_language"]
Sentiment = Literal["positive", "negative"]


class Constraints(BaseModel):
    """What the user asked for or ruled out, as catalog attributes and an era."""

    include: list[str] = Field(default_factory=list, description="attributes wanted (any of)")
    exclude: list[str] = Field(default_factory=list, description="attributes ruled out")
    decades: list[str] = Field(default_factory=list, description="eras wanted, e.g. '1990s'")

    def is_empty(self) -> bool:
        """Whether nothing is constrained."""
        return not (self.include or self.exclude or self.decades)


class Mention(BaseModel):
    """A title the user gave feedback on, before it is matched to the catalog."""

    text: str = Field(description="the title as the user wrote it ('that' = the last top pick)")
    sentiment: Sentiment = Field(
        description="loved / liked = positive, hated / not that = negative"
    )


class Understanding(BaseModel):
    """What one user message means (the parser's or LMMem's structured reading)."""

    intent: Intent = Field(description="what the message is mainly about")
    request: str | None = Field(default=None, description="the free-text request, if any")
    constraints: Constraints = Field(default_factory=Constraints)
    feedback: list[Mention] = Field(default_factory=list, description="titles with a sentiment")


class ResolvedFeedback(BaseModel):
    """A feedback mention matched to one catalog item."""

    item_id: str
    title: str
    sentiment: Sentiment


class Clarification(BaseModel):
    """A pending question: which of several catalog items a mention meant."""

    mention: str = Field(description="the text the user wrote")
    sentiment: Sentiment
    options: list[str] = Field(description="candidate item ids, in the order shown")


class ChatInput(TypedDict, total=False):
    """What a caller sends per turn."""

    messages: Annotated[list[AnyMessage], add_messages]  # the new user message(s)
    user_id: str  # who is chatting (unknown ids get a cold-start conversation)


class ChatOutput(TypedDict, total=False):
    """What a turn returns."""

    messages: Annotated[list[AnyMessage], add_messages]  # the conversation, reply last
    ranking: list[RankedItem]  # the picks shown last, best first
    facets: list[Facet]  # the facets behind them
    neighbours: list[CuratedNeighbour]  # the curated neighbours behind them
    usage: Annotated[dict[str, CallUsage], merge_usage]  # per node usage of the last turn
    recorded: list[str]  # interaction ids recorded by the last turn


class ChatState(ChatInput, ChatOutput, total=False):
    """Internal state: kept per thread by the checkpointer."""

    understanding: Understanding  # this turn's reading of the last message
    constraints: Constraints  # the constraints in force (carried across turns)
    matched_feedback: list[ResolvedFeedback]  # this turn's feedback matched to catalog items
    unmatched: list[str]  # this turn's titles that matched nothing
    already_rated: list[str]  # this turn's titles the user had already rated
    liked: list[str]  # items liked in this conversation (seeds for retrieval)
    rejected: list[str]  # items rejected in this conversation (never proposed again)
    pending: Clarification | None  # the open "which one did you mean?" question
    candidates: list[str]  # retrieved item ids handed to the recommend subgraph
    request: str | None  # the request text handed to the recommend subgraph
    notes: list[str]  # this turn's notes for the reply (cold start, relaxed constraints, ...)
