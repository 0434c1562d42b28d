"""The rules graph (offline, once per dataset): domain_stats -> generate_rules -> save_rules."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from nodes.domain_stats import domain_stats_node
from nodes.generate_rules import generate_rules
from nodes.save_rules import save_rules
from schemas.context import MemRecContext
from schemas.rules_state import RulesInput, RulesOutput, RulesState


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
