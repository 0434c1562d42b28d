"""The `rank` node: LLMRec ranks the candidates from memory, facets and the request."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from memory_store.workspace import Workspace, aworkspace_for
from roles.factory import build_roles
from roles.notices import fallback_notices
from schemas.context import MemRecContext
from schemas.recommend_state import RecommendState
from schemas.records import CandidateItem, NeighbourSnippet, RankedItem, RankingInput

CANDIDATE_TEXT_CHARS = 200


def ranking_input(ws: Workspace, state: RecommendState, ctx: MemRecContext) -> RankingInput:
    """Assemble what the ranker sees for this state and context."""
    ds = ws.dataset
    candidates = [
        CandidateItem(
            item_id=c,
            title=ds.item_titles[ds.item_index[c]],
            text=ds.item_texts[ds.item_index[c]][:CANDIDATE_TEXT_CHARS],
        )
        for c in state["candidates"] or []
    ]
    neighbours = state.get("neighbours") or []
    curated = [NeighbourSnippet(ref=n.ref, kind=n.kind, text="", score=n.score) for n in neighbours]
    inp = RankingInput(
        user_id=state["user_id"],
        user_memory=state.get("user_memory", ""),
        facets=state.get("facets") or [],
        candidates=candidates,
        request=state.get("request"),
    )
    if ctx.curation == "raw":  # naive-collab: raw neighbour memories straight to the ranker
        inp.raw_neighbours = list(state.get("context") or [])
        inp.facets = []
    else:
        inp.curated = curated
    if ctx.memory == "none" and ws.has_user(state["user_id"]):
        items, _ = ws.graph.user_item_times(ws.user_code(state["user_id"]))
        inp.history_titles = [ds.item_titles[i] for i in items[-20:]]
    return inp


def as_permutation(ranked: list[RankedItem], candidates: list[str]) -> list[RankedItem]:
    """Keep the first occurrence of each candidate, drop others, append any missing ones."""
    seen: set[str] = set()
    allowed = set(candidates)
    out = []
    for r in ranked:
        if r.item_id in allowed and r.item_id not in seen:
            seen.add(r.item_id)
            out.append(r)
    low = min((r.score for r in out), default=0.0)
    for c in candidates:
        if c not in seen:
            out.append(RankedItem(item_id=c, score=low - 1.0, rationale="not ranked by the model."))
    return out


async def rank(state: RecommendState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: the result is always a permutation of the candidates."""
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    _, llmrec = build_roles(ctx, ws)
    out = await llmrec.rank(ranking_input(ws, state, ctx))
    return {
        "ranking": as_permutation(out.value.items, list(state["candidates"] or [])),
        "usage": {"rank": out.usage},
        "notes": fallback_notices({"rank": out.usage}),
    }
