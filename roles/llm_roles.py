"""LLM-backed LMMem and LLMRec over any LangChain chat model, each call under the guard.

Every call goes through ``roles/guard.py`` (timeouts, retries, one repair, offline fallback per
step). Post-processing (``roles/cleanup.py``) then enforces the budgets the design promises
whatever the model said: a ranking is a permutation of the candidates, facets are at most
``max_facets`` with evidence drawn from the given neighbours, and propagation patches only the
given neighbours, within length caps. Every such fix counts as one repair in the call's usage.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Generic, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langgraph.constants import TAG_NOSTREAM
from pydantic import BaseModel

from prompts import profile as profile_prompt
from prompts import propagation as propagation_prompt
from prompts import ranking as ranking_prompt
from prompts import rules as rules_prompt
from prompts import synthesis as synthesis_prompt
from roles.cleanup import (
    check_propagation,
    clean_facets,
    clean_propagation,
    dedupe_ranking,
    fill_rationales,
)
from roles.guard import (
    GuardPolicy,
    Validator,
    call_structured,
    chat_model_name,
    finish,
    with_fallback,
)
from schemas.records import (
    CallUsage,
    FacetSet,
    ProfileInput,
    PropagationInput,
    PropagationResult,
    RankedItem,
    Ranking,
    RankingInput,
    RoleOutput,
    SynthesisInput,
    UserProfile,
)
from schemas.roles import LLMRec, LMMem
from schemas.ruleset import DomainStats, RuleSet

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", LMMem, LLMRec)


class _GuardedRole(Generic[F]):
    """Shared construction of the LLM-backed roles: the model, its guard and the fallback role."""

    def __init__(
        self,
        model: BaseChatModel,
        fallback: F,
        *,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        name: str | None = None,
        backoff_base_s: float = 0.5,
        json_mode: bool = True,
        seed: int | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.model = model
        self.fallback: F = fallback
        self.name = name or chat_model_name(model)
        self.policy = GuardPolicy(
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            backoff_base_s=backoff_base_s,
            json_mode=json_mode,
            rng=random.Random(seed),
        )

    async def _call(
        self, messages: Sequence[BaseMessage], schema: type[M], validate: Validator | None = None
    ) -> tuple[M | None, CallUsage]:
        return await call_structured(
            # Tagged: its JSON is internal, never a chat message in stream_mode="messages".
            self.model.with_config(tags=[TAG_NOSTREAM]),  # type: ignore[arg-type]
            messages,
            schema,
            validate=validate,
            policy=self.policy,
            model_name=self.name,
        )


class LLMLMMem(_GuardedRole[LMMem]):
    """The memory manager backed by a chat model, falling back to ``fallback`` per step."""

    async def generate_rules(self, stats: DomainStats) -> RoleOutput[RuleSet]:
        """Write a curation rule set from domain statistics."""
        started = time.perf_counter()
        value, usage = await self._call(rules_prompt.render(stats), RuleSet)
        if value is None:
            return await with_fallback(usage, self.fallback.generate_rules(stats), started)
        return finish(value.model_copy(update={"source": "generated"}), usage, started)

    async def synthesize(self, inp: SynthesisInput) -> RoleOutput[FacetSet]:
        """Turn curated neighbour memories into at most ``max_facets`` facets."""
        started = time.perf_counter()

        def has_facets(facets: FacetSet) -> None:
            if inp.neighbours and not facets.facets:
                raise ValueError(f"no facets, although {len(inp.neighbours)} neighbours were given")

        value, usage = await self._call(synthesis_prompt.render(inp), FacetSet, has_facets)
        if value is None:
            return await with_fallback(usage, self.fallback.synthesize(inp), started)
        facets, fixes = clean_facets(value.facets, inp)
        return finish(FacetSet(facets=facets), usage, started, fixes)

    async def profile(self, inp: ProfileInput) -> RoleOutput[UserProfile]:
        """A user's initial memory, capped like a propagation rewrite."""
        started = time.perf_counter()

        def not_empty(value: UserProfile) -> None:
            if not value.memory.strip():
                raise ValueError("the memory is empty")

        value, usage = await self._call(profile_prompt.render(inp), UserProfile, not_empty)
        if value is None:
            return await with_fallback(usage, self.fallback.profile(inp), started)
        memory = value.memory.strip()[: propagation_prompt.USER_MEMORY_MAX_CHARS]
        return finish(UserProfile(memory=memory), usage, started)

    async def propagate(self, inp: PropagationInput) -> RoleOutput[PropagationResult]:
        """One call: user reflection, item update and neighbour patches."""
        started = time.perf_counter()
        value, usage = await self._call(
            propagation_prompt.render(inp), PropagationResult, check_propagation
        )
        if value is None:
            return await with_fallback(usage, self.fallback.propagate(inp), started)
        result, fixes = clean_propagation(value, inp)
        return finish(result, usage, started, fixes)


class LLMLLMRec(_GuardedRole[LLMRec]):
    """The ranker backed by a chat model; the result is always a permutation of the candidates."""

    async def rank(self, inp: RankingInput) -> RoleOutput[Ranking]:
        """Rank every candidate, each with a rationale."""
        started = time.perf_counter()
        known = {c.item_id for c in inp.candidates}

        def has_known_ids(ranking: Ranking) -> None:
            if known and not any(item.item_id in known for item in ranking.items):
                raise ValueError("the ranking contains none of the candidate item_ids")

        value, usage = await self._call(ranking_prompt.render(inp), Ranking, has_known_ids)
        if value is None:
            return await with_fallback(usage, self.fallback.rank(inp), started)
        items, fixes = await self._complete_permutation(value.items, inp)
        items, filled = fill_rationales(items)
        return finish(Ranking(items=items), usage, started, fixes + filled)

    async def _complete_permutation(
        self, items: list[RankedItem], inp: RankingInput
    ) -> tuple[list[RankedItem], int]:
        """Drop unknown / duplicate ids; append missing candidates in the fallback's order."""
        kept, dropped = dedupe_ranking(items, [c.item_id for c in inp.candidates])
        seen = {item.item_id for item in kept}
        missing = [c.item_id for c in inp.candidates if c.item_id not in seen]
        if not missing:
            return kept, dropped
        out = await self.fallback.rank(inp)  # only now: the offline ranking is not free
        by_id = {item.item_id: item for item in out.value.items}
        order = [i.item_id for i in out.value.items if i.item_id in missing]
        order += [m for m in missing if m not in by_id]  # a fallback that skipped some
        floor = min((item.score for item in kept), default=0.0)
        for pos, item_id in enumerate(order, start=1):
            base = by_id.get(item_id)
            kept.append(
                RankedItem(
                    item_id=item_id,
                    score=floor - pos,
                    rationale=base.rationale if base else "",
                    evidence=list(base.evidence) if base else [],
                )
            )
        return kept, dropped + len(missing)
