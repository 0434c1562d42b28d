"""The records the roles exchange: their inputs, their typed outputs and what each call cost.

Plain pydantic models with no behaviour beyond merging usage: the store persists some of them
(``InteractionEvent``), the graphs carry them in state, the prompts render them and the roles
(``schemas/roles.py``) take and return them.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class CallUsage(BaseModel):
    """What one role call cost: model calls, tokens, latency and how often it had to be rescued."""

    calls: int = Field(
        default=0, description="chat completions sent (retries of one call not included)"
    )
    tokens_in: int = Field(default=0, description="prompt tokens")
    tokens_out: int = Field(default=0, description="completion tokens")
    latency_ms: float = Field(default=0.0, description="wall time of the role call")
    retries: int = Field(default=0, description="transport retries (429, 5xx, timeouts)")
    repairs: int = Field(default=0, description="repair prompts sent after malformed output")
    fallbacks: int = Field(default=0, description="times the offline role answered instead")
    model: str = Field(
        default="offline", description="the model asked (kept when the offline role answered)"
    )
    fallback_reason: str | None = Field(
        default=None, description="why the offline role answered instead of the model"
    )
    errors: dict[str, int] = Field(
        default_factory=dict,
        description="failed attempts per class: length, content_filter, refusal, connection, "
        "status, timeout, malformed",
    )
    estimated: bool = Field(
        default=False, description="some tokens are estimates (the server reported no usage)"
    )
    output_mode: str | None = Field(
        default=None, description="structured output used: json_schema, json_object, tool, ..."
    )

    def merged(self, other: CallUsage) -> CallUsage:
        """Sum of two usages (model of the later one, unless it is the offline role's)."""
        errors = dict(self.errors)
        for kind, n in other.errors.items():
            errors[kind] = errors.get(kind, 0) + n
        offline = other.model == "offline" and not other.calls
        return CallUsage(
            calls=self.calls + other.calls,
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            latency_ms=self.latency_ms + other.latency_ms,
            retries=self.retries + other.retries,
            repairs=self.repairs + other.repairs,
            fallbacks=self.fallbacks + other.fallbacks,
            model=self.model if offline else other.model,
            fallback_reason=other.fallback_reason or self.fallback_reason,
            errors=errors,
            estimated=self.estimated or other.estimated,
            output_mode=other.output_mode or self.output_mode,
        )


class RoleOutput(BaseModel, Generic[T]):
    """A role's typed result with the usage it cost."""

    value: T
    usage: CallUsage


class NeighbourSnippet(BaseModel):
    """A curated neighbour's memory as handed to a role."""

    ref: str = Field(description="'user:<id>' or 'item:<id>'")
    kind: Literal["user", "item"]
    text: str = Field(description="the neighbour's memory text (possibly trimmed)")
    score: float = Field(description="curation score")
    title: str = Field(default="", description="the item's title (item neighbours only)")


def _bounded_strings(max_items: int, max_length: int) -> dict[str, Any]:
    """JSON-schema bounds of a list of short strings (see :data:`GRAMMAR_BOUNDS`)."""
    return {"maxItems": max_items, "items": {"type": "string", "maxLength": max_length}}


# Bounds that exist only in the JSON schema sent to the model, never in validation: a server that
# turns the schema into a grammar (llama.cpp, vLLM) then closes every string and list in time, so
# a small model's answer ends within the task's token budget instead of at the length limit (a
# longer answer from a server without a grammar is still accepted). OpenAI's strict mode drops them.
GRAMMAR_BOUNDS = {"name": 80, "description": 240, "rationale": 160}
# Ids are not bounded (any indexed id, however long, must stay writable); an evidence entry is a
# facet name or a neighbour ref, so it gets a name's bound.
# llama.cpp refuses a grammar whose repetitions exceed its limit ("number of rules that are going
# to be repeated ... exceeds sane defaults"): a string bounded at 1,200 characters took the lane's
# server down. No bound goes past this.
MAX_GRAMMAR_LENGTH = 500


class Facet(BaseModel):
    """A named preference synthesized from collaborative neighbours."""

    name: str = Field(
        description="short name of the preference, e.g. 'crime thrillers'",
        json_schema_extra={"maxLength": GRAMMAR_BOUNDS["name"]},
    )
    description: str = Field(
        description="one or two sentences",
        json_schema_extra={"maxLength": GRAMMAR_BOUNDS["description"]},
    )
    confidence: float = Field(ge=0.0, le=1.0, description="how strongly the evidence supports it")
    evidence: list[str] = Field(
        default_factory=list,
        description="neighbour refs supporting it",
        json_schema_extra=_bounded_strings(3, GRAMMAR_BOUNDS["name"]),
    )


class FacetSet(BaseModel):
    """The output of synthesis."""

    facets: list[Facet] = Field(default_factory=list)


class CandidateItem(BaseModel):
    """A candidate as shown to the ranker."""

    item_id: str
    title: str
    text: str = Field(default="", description="static catalogue text (without the title)")
    memory: str = Field(
        default="",
        description="the item's current memory (catalogue text enriched by propagation), "
        "trimmed to the ranking's budget; empty when the method reads no memory",
    )


class RankedItem(BaseModel):
    """One ranked candidate with its grounded rationale."""

    item_id: str
    score: float
    rationale: str = Field(json_schema_extra={"maxLength": GRAMMAR_BOUNDS["rationale"]})
    evidence: list[str] = Field(
        default_factory=list,
        description="facet names / neighbour refs",
        json_schema_extra=_bounded_strings(2, GRAMMAR_BOUNDS["name"]),
    )


class Ranking(BaseModel):
    """The ranker's output: candidates best first."""

    items: list[RankedItem]


class NeighbourPatch(BaseModel):
    """A note propagation adds to one neighbour's memory."""

    ref: str = Field(description="'user:<id>' or 'item:<id>' of the neighbour")
    note: str = Field(description="the text to add to that neighbour's memory")


class PropagationResult(BaseModel):
    """The output of the one propagation call."""

    user_memory: str = Field(description="self-reflection rewrite of the user's memory")
    item_memory: str = Field(description="updated memory of the item")
    neighbour_patches: list[NeighbourPatch] = Field(default_factory=list)


class SynthesisInput(BaseModel):
    """What synthesize needs."""

    user_id: str
    dataset: str = Field(default="", description="dataset name: picks the prompt's domain words")
    user_memory: str
    neighbours: list[NeighbourSnippet]
    max_facets: int = Field(default=7, description="upper bound on facets")
    request: str | None = None


class RankingInput(BaseModel):
    """What rank needs."""

    user_id: str
    dataset: str = Field(default="", description="dataset name: picks the prompt's domain words")
    user_memory: str
    facets: list[Facet] = Field(default_factory=list)
    candidates: list[CandidateItem]
    request: str | None = None
    history_titles: list[str] = Field(default_factory=list, description="for the vanilla method")
    raw_neighbours: list[NeighbourSnippet] = Field(
        default_factory=list, description="uncurated neighbours, for the naive-collab method"
    )
    curated: list[NeighbourSnippet] = Field(
        default_factory=list,
        description="curated neighbour refs and scores (text empty; prompts show facets instead)",
    )


class InteractionEvent(BaseModel):
    """One recorded interaction, the unit of propagation."""

    interaction_id: str
    user_id: str
    item_id: str
    kind: str = Field(default="positive", description="positive, negative, click, rating:<n>, ...")
    ts: float


class PropagationInput(BaseModel):
    """What the one propagation call needs."""

    event: InteractionEvent
    item_title: str
    user_memory: str
    item_memory: str
    neighbours: list[NeighbourSnippet]
    facets: list[Facet] = Field(
        default_factory=list, description="the user's collaborative facets (M_collab)"
    )
    when: str = Field(default="", description="the event's date (YYYY-MM-DD), '' without clock")
    dataset: str = Field(default="", description="dataset name: picks the prompt's domain words")


class ProfileInput(BaseModel):
    """What the warm-up memory of a user is written from: their own train history only."""

    user_id: str
    titles: list[str] = Field(description="the user's item titles, oldest first (at most 40)")
    attributes: list[str] = Field(default_factory=list, description="their most frequent tags")


class UserProfile(BaseModel):
    """A user's initial memory."""

    memory: str = Field(description="a concise profile of the user's tastes, 2 to 5 sentences")
