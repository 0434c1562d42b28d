"""State schemas of the chat graph: a messages state plus what one turn understood and picked.

Structured fields use :func:`schemas.coerce.latest` as their reducer, so a JSON edit (Studio's
state editor, ``threads.update_state``) is validated into the model instead of stored as a dict.
"""

from __future__ import annotations

from typing import Annotated, Literal

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from schemas.coerce import latest
from schemas.recommend_state import CuratedNeighbour, add_notes, merge_usage
from schemas.records import CallUsage, Facet, RankedItem

Intent = Literal["recommend", "feedback", "clarify", "empty", "other_language"]
Sentiment = Literal["positive", "negative"]
RelativeEra = Literal["older", "newer"]
DEFAULT_COUNT = 5
MAX_COUNT = 20


class Constraints(BaseModel):
    """What the user asked for or ruled out: catalogue attributes, decades, years, a direction."""

    include: list[str] = Field(default_factory=list, description="attributes wanted (any of)")
    exclude: list[str] = Field(default_factory=list, description="attributes ruled out")
    decades: list[str] = Field(default_factory=list, description="eras wanted, e.g. '1990s'")
    year_min: int | None = Field(default=None, description="earliest year wanted ('since 1995')")
    year_max: int | None = Field(default=None, description="latest year wanted ('before 1980')")
    relative_era: RelativeEra | None = Field(
        default=None, description="'older' / 'newer' than the picks shown last (or the catalogue)"
    )

    def is_empty(self) -> bool:
        """Whether nothing is constrained."""
        bounded = self.year_min is not None or self.year_max is not None
        wishes = self.include or self.exclude or self.decades
        return not (wishes or bounded or self.relative_era is not None)


class Mention(BaseModel):
    """A title the user gave feedback on, before it is matched to the catalog."""

    text: str = Field(
        description="the title as written, or a reference: 'that' = the top pick shown last, "
        "'#2' = the second pick shown last, 'these' = every pick shown last"
    )
    sentiment: Sentiment = Field(
        description="loved / liked = positive; hated / did not like = negative (a lasting dislike)"
    )


class Understanding(BaseModel):
    """What one user message means (the offline reading or LMMem's one structured call)."""

    intent: Intent = Field(description="what the message is mainly about")
    request: str | None = Field(default=None, description="the free-text request, if any")
    constraints: Constraints = Field(default_factory=Constraints)
    feedback: list[Mention] = Field(
        default_factory=list, description="titles the user has seen, with a lasting sentiment"
    )
    count: int | None = Field(default=None, ge=1, le=50, description="how many picks were asked")
    exclude_shown: bool = Field(
        default=False,
        description="'something else / more': leave out every item shown in this conversation",
    )
    skip: list[str] = Field(
        default_factory=list,
        description="titles or references to leave out of this conversation only ('not that "
        "one'); never recorded as feedback",
    )
    similar_to: list[str] = Field(
        default_factory=list,
        description="titles or references to find items like ('something like X'); not feedback",
    )


class ResolvedFeedback(BaseModel):
    """A feedback mention matched to one catalog item."""

    item_id: str
    title: str
    sentiment: Sentiment


class Clarification(BaseModel):
    """A pending question: which catalogue item a feedback mention meant ("did you mean ...?")."""

    mention: str = Field(description="the text the user wrote")
    sentiment: Sentiment
    options: list[str] = Field(description="candidate item ids, in the order shown")


class ChatInput(TypedDict, total=False):
    """What a caller sends per turn (only ``messages`` is required: see ``understand``)."""

    messages: Annotated[list[AnyMessage], add_messages]  # the new user message(s)
    user_id: str  # who is chatting; default: the signed-in user, the assistant's, else a guest


class ChatOutput(TypedDict, total=False):
    """What a turn returns."""

    messages: Annotated[list[AnyMessage], add_messages]  # the conversation, reply last
    ranking: Annotated[list[RankedItem], latest(list[RankedItem])]  # ranked candidates, best first
    facets: Annotated[list[Facet], latest(list[Facet])]  # the facets behind them
    neighbours: Annotated[list[CuratedNeighbour], latest(list[CuratedNeighbour])]  # behind them
    usage: Annotated[dict[str, CallUsage], merge_usage]  # per node usage of the last turn
    recorded: list[str]  # interaction ids recorded by the last turn
    picks: list[str]  # the item ids the last reply showed, in order ('#2' is the second)


class ChatState(ChatInput, ChatOutput, total=False):
    """Internal state: kept per thread by the checkpointer."""

    understanding: Annotated[Understanding, latest(Understanding)]  # this turn's reading
    constraints: Annotated[Constraints, latest(Constraints)]  # constraints in force (kept)
    matched_feedback: Annotated[list[ResolvedFeedback], latest(list[ResolvedFeedback])]
    unmatched: list[str]  # this turn's titles that matched nothing
    already_rated: list[str]  # this turn's titles the user had already rated
    liked: list[str]  # items liked in this conversation (seeds for retrieval)
    rejected: list[str]  # skipped or disliked in this conversation (never proposed again)
    skipped: list[str]  # this turn's "not that one" items (left out of this conversation)
    similar: list[str]  # this turn's "something like X" items (seeds, not feedback)
    shown: list[str]  # every item shown in this conversation ("something else" leaves them out)
    exclude_shown: bool  # this turn asked for something else / more
    count: int  # how many picks this turn shows
    pending: Annotated[Clarification | None, latest(Clarification | None)]  # open question
    candidates: list[str]  # retrieved item ids handed to the recommend subgraph
    request: str | None  # the request text handed to the recommend subgraph
    notes: Annotated[list[str], add_notes]  # this turn's notes for the reply (reset per turn)
