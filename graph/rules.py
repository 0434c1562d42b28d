"""The rules graph (offline, once per dataset): domain_stats -> generate_rules -> save_rules."""

from __future__ import annotations

from typing import Annotated

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from graph.context import MemRecContext
from graph.state import merge_usage
from memory_store.rules import DomainStats, RuleSet
from nodes.generate_rules import generate_rules, save_rules
from nodes.roles import CallUsage
from nodes.rules_stats import domain_stats_node


class RulesInput(TypedDict, total=False):
    """The rules graph takes no input: the dataset comes from the run context."""


class RulesOutput(TypedDict, total=False):
    """What the rules graph returns."""

    stats: DomainStats  # the statistics the rules were written from
    rules: RuleSet  # the validated rule set (data, never code)
    path: str  # where it was saved
    usage: Annotated[dict[str, CallUsage], merge_usage]  # model usage of generate_rules


class RulesState(RulesInput, RulesOutput, total=False):
    """Internal state of the rules graph (input and output together)."""


def build_rules_graph() -> StateGraph[RulesState, MemRecContext, RulesInput, RulesOutput]:
    """Wire the rules pipeline."""
    builder = StateGraph(
        RulesState, context_schema=MemRecContext, input_schema=RulesInput, output_schema=RulesOutput
    )
    builder.add_node("domain_stats", domain_stats_node)
    builder.add_node("generate_rules", generate_rules)
    builder.add_node("save_rules", save_rules)
    builder.add_edge(START, "domain_stats")
    builder.add_edge("domain_stats", "generate_rules")
    builder.add_edge("generate_rules", "save_rules")
    builder.add_edge("save_rules", END)
    return builder


graph = build_rules_graph().compile(name="rules")
