"""The two roles of MemRec as typed interfaces: LMMem (memory manager) and LLMRec (ranker).

Nodes only ever talk to these interfaces. Each has an offline implementation (deterministic,
collaborative statistics, no network: ``roles/offline_roles.py``) and an LLM-backed one
(``roles/llm_roles.py``), built from ``"provider:model"`` strings by ``roles/factory.py``.
"""

from __future__ import annotations

from typing import Protocol

from schemas.records import (
    FacetSet,
    ProfileInput,
    PropagationInput,
    PropagationResult,
    Ranking,
    RankingInput,
    RoleOutput,
    SynthesisInput,
    UserProfile,
)
from schemas.ruleset import DomainStats, RuleSet


class LMMem(Protocol):
    """The memory manager: rules, synthesis, propagation."""

    async def generate_rules(self, stats: DomainStats) -> RoleOutput[RuleSet]:
        """Write a curation rule set from domain statistics."""
        ...

    async def synthesize(self, inp: SynthesisInput) -> RoleOutput[FacetSet]:
        """Turn curated neighbour memories into at most ``max_facets`` facets."""
        ...

    async def propagate(self, inp: PropagationInput) -> RoleOutput[PropagationResult]:
        """One call: user reflection, item update and neighbour patches."""
        ...

    async def profile(self, inp: ProfileInput) -> RoleOutput[UserProfile]:
        """Write a user's initial memory from their train history (index warm-up)."""
        ...


class LLMRec(Protocol):
    """The ranker."""

    async def rank(self, inp: RankingInput) -> RoleOutput[Ranking]:
        """Rank every candidate, each with a rationale."""
        ...
