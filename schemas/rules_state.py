"""State schemas of the rules graph: no input, the statistics and the validated rule set out."""

from __future__ import annotations

from typing import Annotated

from typing_extensions import TypedDict

from schemas.recommend_state import add_notes, merge_usage
from schemas.records import CallUsage
from schemas.ruleset import DomainStats, RuleSet


class RulesInput(TypedDict, total=False):
    """The rules graph takes no input: the dataset comes from the run context."""


class RulesOutput(TypedDict, total=False):
    """What the rules graph returns."""

    stats: DomainStats  # the statistics the rules were written from
    rules: RuleSet  # the validated rule set (data, never code)
    path: str  # where it was saved
    usage: Annotated[dict[str, CallUsage], merge_usage]  # model usage of generate_rules
    notes: Annotated[list[str], add_notes]  # the model failed and the offline writer wrote them


class RulesState(RulesInput, RulesOutput, total=False):
    """Internal state of the rules graph (input and output together)."""
