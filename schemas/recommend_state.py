"""State schemas of the recommend graph: input, internal state and output kept separate."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from schemas.coerce import coerce, latest
from schemas.records import CallUsage, Facet, NeighbourSnippet, RankedItem

FEEDBACK_KINDS = r"^(positive|negative|click|skip|rating:[1-5])$"


class Feedback(BaseModel):
    """An interaction to record after the response (the post-response branch)."""

    item_id: str = Field(min_length=1, max_length=128, description="the item interacted with")
    kind: str = Field(
        default="positive",
        pattern=FEEDBACK_KINDS,
        description="positive, negative, click, skip or rating:<1-5>",
    )


class CuratedNeighbour(BaseModel):
    """A neighbour chosen by curation, with why."""

    ref: str = Field(description="'user:<id>' or 'item:<id>'")
    kind: Literal["user", "item"]
    score: float = Field(description="rule-set score")
    rules: list[str] = Field(default_factory=list, description="rules that fired")
    features: dict[str, float] = Field(default_factory=dict, description="the graph features")


def merge_usage(left: dict[str, CallUsage], right: dict[str, CallUsage]) -> dict[str, CallUsage]:
    """Reducer: per-node usage, summed when a node reports twice (JSON edits become models)."""
    out = coerce(dict[str, CallUsage], left or {})
    for node, usage in coerce(dict[str, CallUsage], right or {}).items():
        out[node] = out[node].merged(usage) if node in out else usage
    return out


def add_notes(left: list[str], right: list[str]) -> list[str]:
    """Reducer: notes accumulate in order."""
    return [*(left or []), *(right or [])]


class RecommendInput(TypedDict, total=False):
    """What a caller gives the recommend graph."""

    user_id: str  # the user to recommend for (unknown ids run as a cold start)
    candidates: list[str] | None  # item ids to rank; None = the benchmark candidate list
    request: str | None  # optional free-text request
    feedback: Annotated[list[Feedback] | None, latest(list[Feedback] | None)]  # to record after


class RecommendOutput(TypedDict, total=False):
    """What the recommend graph returns."""

    ranking: Annotated[list[RankedItem], latest(list[RankedItem])]  # every candidate, best first
    facets: Annotated[list[Facet], latest(list[Facet])]  # synthesized preferences with evidence
    neighbours: Annotated[list[CuratedNeighbour], latest(list[CuratedNeighbour])]  # with rules
    usage: Annotated[dict[str, CallUsage], merge_usage]  # per node: tokens, latency, repairs
    notes: Annotated[list[str], add_notes]  # degradations a caller should know (cold start, ...)
    recorded: list[str]  # interaction ids written by the post-response branch


class RecommendState(RecommendInput, RecommendOutput, total=False):
    """Internal state: input, output and the working fields between nodes."""

    user_memory: str  # the user's own memory text
    context: Annotated[list[NeighbourSnippet], latest(list[NeighbourSnippet])]  # packed in tau
    cold_start: bool  # the user is unknown to the graph
