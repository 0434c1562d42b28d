"""The offline roles: deterministic LMMem and LLMRec from collaborative statistics, no network.

They implement the same interfaces as the LLM-backed roles and are the embedded default:
- rules are written from the same domain statistics an LLM would see;
- facets are the attributes the curated neighbours favour, with those neighbours as evidence, and
  ranking is a blend of evidence channels whose weights are tuned per dataset at index time; the
  rationale of each item names the evidence that contributed most (both in
  ``roles/offline_ranking.py``);
- propagation re-summarises the user, notes on the item what kind of users chose it and patches
  the neighbours with the co-interaction.
"""

from __future__ import annotations

import time

import numpy as np

from memory_store.summaries import append_note, notes_of, user_summary
from memory_store.workspace import Workspace
from roles.offline_ranking import offline_facets, offline_ranking
from roles.offline_rules import offline_rules
from schemas.records import (
    CallUsage,
    FacetSet,
    NeighbourPatch,
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


def _usage(start: float) -> CallUsage:
    return CallUsage(latency_ms=(time.perf_counter() - start) * 1000.0)


def _split_ref(ref: str) -> tuple[str, str]:
    kind, _, entity = ref.partition(":")
    return kind, entity


def offline_profile(inp: ProfileInput) -> UserProfile:
    """A user's initial memory from their history, without a model."""
    tags = f" Frequent tags: {', '.join(inp.attributes)}." if inp.attributes else ""
    return UserProfile(memory=user_summary(inp.titles, []) + tags)


class OfflineProfiles:
    """The offline profile writer alone: the fallback of an LLM LMMem at index time."""

    async def profile(self, inp: ProfileInput) -> RoleOutput[UserProfile]:
        """Deterministic initial memory."""
        start = time.perf_counter()
        return RoleOutput(value=offline_profile(inp), usage=_usage(start))


class OfflineLMMem:
    """Deterministic memory manager over a workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    async def generate_rules(self, stats: DomainStats) -> RoleOutput[RuleSet]:
        """Rules from domain statistics."""
        start = time.perf_counter()
        return RoleOutput(value=offline_rules(stats), usage=_usage(start))

    async def synthesize(self, inp: SynthesisInput) -> RoleOutput[FacetSet]:
        """Facets = the neighbours' attributes weighted by curation score, with evidence."""
        start = time.perf_counter()
        return RoleOutput(value=self.facets(inp), usage=_usage(start))

    def facets(self, inp: SynthesisInput) -> FacetSet:
        """The synthesis itself (sync, used by fallbacks too): ``roles/offline_ranking``."""
        return offline_facets(self.ws, inp)

    async def profile(self, inp: ProfileInput) -> RoleOutput[UserProfile]:
        """The deterministic initial memory."""
        return await OfflineProfiles().profile(inp)

    async def propagate(self, inp: PropagationInput) -> RoleOutput[PropagationResult]:
        """Re-summarise the user, note the chooser on the item, patch the neighbours."""
        start = time.perf_counter()
        return RoleOutput(value=self.propagation(inp), usage=_usage(start))

    def propagation(self, inp: PropagationInput) -> PropagationResult:
        """The propagation itself (sync, used by fallbacks too)."""
        ds, graph = self.ws.dataset, self.ws.graph
        ev = inp.event
        title = inp.item_title
        positive = not ev.kind.startswith(("negative", "dislike", "skip"))
        u = ds.user_index.get(ev.user_id)
        if u is not None:
            items, _ = graph.user_item_times(u)
            titles = [ds.item_titles[i] for i in items]
            attrs = [ds.item_attributes[i] for i in items] if ds.item_attributes else []
            user_text = user_summary(titles, attrs, notes=notes_of(inp.user_memory))
        else:
            user_text = inp.user_memory
        if not positive:
            user_text = append_note(user_text, f"Did not like {title}.")
        i = ds.item_index.get(ev.item_id)
        taste = ", ".join(self._top_attributes(u, 3)) if u is not None else ""
        chooser = f"users who favour {taste}" if taste else "new users"
        verb = "chosen by" if positive else "rejected by"
        item_text = append_note(inp.item_memory, f"Recently {verb} {chooser}.")
        patches = []
        ref = f"item:{ev.item_id}"  # never the title: item text may carry an injection
        for n in inp.neighbours:
            kind, _ = _split_ref(n.ref)
            note = (
                f"Users like you recently chose {ref}."
                if kind == "user"
                else f"Often chosen together with {ref}."
            )
            if positive:
                patches.append(NeighbourPatch(ref=n.ref, note=note))
        del i
        return PropagationResult(
            user_memory=user_text, item_memory=item_text, neighbour_patches=patches
        )

    def _top_attributes(self, user: int | None, n: int) -> list[str]:
        if user is None:
            return []
        profile = self.ws.graph.user_profiles(np.array([user]))[0]
        order = np.argsort(-profile)[:n]
        return [self.ws.graph.attribute_names[a] for a in order if profile[a] > 0]


class OfflineLLMRec:
    """Deterministic ranker over a workspace: the tuned blend of ``roles/offline_ranking``."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    async def rank(self, inp: RankingInput) -> RoleOutput[Ranking]:
        """Rank every candidate with a rationale built from its evidence."""
        start = time.perf_counter()
        return RoleOutput(value=self.ranking(inp), usage=_usage(start))

    def ranking(self, inp: RankingInput) -> Ranking:
        """The ranking itself (sync, used by fallbacks and to complete partial LLM rankings)."""
        return offline_ranking(self.ws, inp)
