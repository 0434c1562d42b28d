"""The `rank` node: LLMRec ranks the candidates from memory, facets and the request.

Each candidate is shown with its CURRENT item memory (the catalogue text as propagation has
enriched it), read for all candidates in one batched store call and fitted into
``ITEM_MEMORY_BUDGET`` tokens (its newest collaborative notes first); vanilla reads no memory
and sees the static catalogue text instead.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from memory_store.summaries import notes_of
from memory_store.workspace import Workspace, aworkspace_for
from prompts.tokens import count_tokens, truncate_to_tokens
from roles.factory import build_roles
from roles.notices import fallback_notices
from schemas.context import MemRecContext
from schemas.recommend_state import RecommendState
from schemas.records import CandidateItem, NeighbourSnippet, RankedItem, RankingInput

CANDIDATE_TEXT_CHARS = 200
ITEM_MEMORY_BUDGET = 2400  # tokens of candidate memories in one ranking call, in all
ITEM_MEMORY_TOKENS = 160  # at most this many per candidate


def without_title(text: str, title: str) -> str:
    """``text`` without a leading copy of the title (item texts start with it)."""
    stripped = text.strip()
    if title and stripped.startswith(title):
        stripped = stripped[len(title) :].lstrip(" .:-")
    return stripped


def fit_memory(text: str, tokens: int) -> str:
    """The memory within ``tokens``: its newest collaborative notes first, then its own text."""
    if count_tokens(text) <= tokens:  # the common case (counts are cached)
        return text
    notes = notes_of(text)
    own = text.split(" Note: ")[0] if notes else text
    kept: list[str] = []
    used = 0
    for note in reversed(notes):
        cost = count_tokens(note) + 1
        if used + cost > tokens // 2:  # notes may fill half the budget, the rest is the item
            if not kept:  # the newest note is always shown, cut to the half if need be
                kept.append(truncate_to_tokens(note, tokens // 2))
                used = tokens // 2
            break
        kept.insert(0, note)
        used += cost
    head = truncate_to_tokens(own, max(0, tokens - used))
    return " ".join([head, *kept]).strip()


def candidate_items(ws: Workspace, ids: list[str], read_memory: bool) -> list[CandidateItem]:
    """The candidates as the ranker sees them: title, and current memory (or catalogue text)."""
    ds = ws.dataset
    records = ws.memories.get_many("item", ids) if read_memory and ids else {}
    per_item = min(ITEM_MEMORY_TOKENS, ITEM_MEMORY_BUDGET // max(len(ids), 1))
    out = []
    for c in ids:
        code = ds.item_index[c]
        title = ds.item_titles[code]
        rec = records.get(c)
        if rec is not None:
            memory = fit_memory(without_title(rec.text, title), per_item)
            out.append(CandidateItem(item_id=c, title=title, memory=memory))
        else:
            text = without_title(ds.item_texts[code], title)[:CANDIDATE_TEXT_CHARS]
            out.append(CandidateItem(item_id=c, title=title, text=text))
    return out


def ranking_input(ws: Workspace, state: RecommendState, ctx: MemRecContext) -> RankingInput:
    """Assemble what the ranker sees for this state and context."""
    ds = ws.dataset
    candidates = candidate_items(ws, list(state["candidates"] or []), ctx.memory != "none")
    neighbours = state.get("neighbours") or []
    curated = [NeighbourSnippet(ref=n.ref, kind=n.kind, text="", score=n.score) for n in neighbours]
    inp = RankingInput(
        user_id=state["user_id"],
        dataset=ws.name,
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
