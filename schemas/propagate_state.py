"""State schemas of the propagate graph and the records it carries between its nodes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from schemas.coerce import latest
from schemas.records import CallUsage, InteractionEvent, PropagationInput, PropagationResult


class LoadedContext(BaseModel):
    """Everything the one propagation call and the writes after it need."""

    event: InteractionEvent = Field(description="the interaction being propagated")
    inp: PropagationInput = Field(description="what LMMem.propagate receives")
    versions: dict[str, int] = Field(
        default_factory=dict, description="'<kind>:<id>' -> memory version when loaded"
    )
    skip_reason: str | None = Field(
        default=None, description="why nothing will be propagated, if so"
    )


class MemoryWrite(BaseModel):
    """One memory a propagation wrote."""

    ref: str = Field(description="'user:<id>' or 'item:<id>'")
    version: int = Field(description="the version the write created")


class PropagationReport(BaseModel):
    """What one propagation did."""

    interaction_id: str = Field(description="the propagated interaction (the cause of writes)")
    writes: list[MemoryWrite] = Field(default_factory=list, description="memories written")
    skipped: int = Field(
        default=0, description="writes skipped because this cause already made them"
    )
    dropped_patches: int = Field(
        default=0, description="unknown-ref, malformed or oversized patches"
    )
    refused_patches: int = Field(
        default=0, description="patches that would leak a user, item text or an instruction"
    )
    usage: CallUsage = Field(default_factory=lambda: CallUsage(), description="the one LMMem call")
    notes: list[str] = Field(default_factory=list, description="why things were skipped")


class PropagateInput(TypedDict, total=False):
    """What starts a propagation: an interaction id from the event log, or the full event."""

    interaction_id: str  # a recorded interaction (its event is read from the log)
    event: InteractionEvent | dict[str, Any] | None  # or the event itself


class PropagateOutput(TypedDict, total=False):
    """What a propagation returns."""

    report: Annotated[PropagationReport, latest(PropagationReport)]  # writes, skips, patches, usage


class PropagateState(PropagateInput, PropagateOutput, total=False):
    """Internal state between the three nodes."""

    loaded: Annotated[LoadedContext, latest(LoadedContext)]  # event, memories, neighbours
    result: Annotated[PropagationResult, latest(PropagationResult)]  # the one LMMem call's answer
    usage: Annotated[CallUsage, latest(CallUsage)]  # what that call cost
