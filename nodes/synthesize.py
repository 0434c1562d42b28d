"""The `synthesize` node: pack curated neighbour memories into tau tokens, then LMMem -> facets.

Facets are cached per workspace (``memory_store/facet_cache.py``), keyed by the versions of the
user and of the packed neighbours plus everything else synthesis depends on: a repeat request for
an unchanged user skips the model call (usage ``calls=0``, ``model='cache'``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from typing import Any

from langgraph.runtime import Runtime

from memory_store.facet_cache import FacetKey, facet_cache_for
from memory_store.workspace import Workspace, aworkspace_for
from prompts.blocks import LINE_ENCODER
from prompts.tokens import count_tokens
from roles.factory import build_roles, role_specs
from roles.notices import fallback_notices
from schemas.context import MemRecContext
from schemas.recommend_state import CuratedNeighbour, RecommendState
from schemas.records import CallUsage, NeighbourSnippet, SynthesisInput
from schemas.tenancy import shown_to_caller

_TEXT = json.JSONEncoder(ensure_ascii=False)  # json.dumps with options builds one per call


def pack_neighbours(
    ws: Workspace, neighbours: list[CuratedNeighbour], tau: int
) -> list[NeighbourSnippet]:
    """Best-first packing: add each neighbour's memory if it fits the budget, else skip it."""
    return pack_neighbours_versioned(ws, neighbours, tau)[0]


def pack_neighbours_versioned(
    ws: Workspace, neighbours: list[CuratedNeighbour], tau: int
) -> tuple[list[NeighbourSnippet], dict[str, int]]:
    """``pack_neighbours`` plus the memory version of every packed neighbour (ref -> version)."""
    ids: dict[str, list[str]] = {"user": [], "item": []}
    for n in neighbours:
        ids[n.kind].append(n.ref.split(":", 1)[1])
    records = {
        kind: ws.memories.get_many(kind, entity_ids)  # type: ignore[arg-type]
        for kind, entity_ids in ids.items()
        if entity_ids
    }
    packed: list[NeighbourSnippet] = []
    versions: dict[str, int] = {}
    used = 0
    for n in sorted(neighbours, key=lambda n: -n.score):
        rec = records.get(n.kind, {}).get(n.ref.split(":", 1)[1])
        if rec is None:
            continue
        snippet = NeighbourSnippet(ref=n.ref, kind=n.kind, text=rec.text, score=n.score)
        cost = snippet_tokens(snippet)
        if used + cost > tau:
            continue  # skip what does not fit; a later, shorter memory may still fit
        used += cost
        versions[n.ref] = rec.version
        packed.append(snippet)
    return packed, versions


def snippet_tokens(snippet: NeighbourSnippet) -> int:
    """Tokens of the snippet's rendered line, plus its newline: an upper bound, cheap to compute.

    The memory text is counted on its own (cached: memories repeat across requests) and the
    line around it (``neighbour_lines`` with an empty text, built here without a model copy)
    separately; splitting a text never lowers the estimated count.
    """
    line = _line_head_tokens(snippet.ref) + _line_tail_tokens(round(snippet.score, 2))
    return line + count_tokens(_TEXT.encode(snippet.text)) + 1


# The empty-text line ``{"ref": "<ref>", "score": <score>, "text": ""}`` counted in two parts, each
# cached (refs and rounded scores repeat across requests): the pre-tokens never span the space
# after ``"score":``, so the two counts add up to the line's exactly (tests/test_recommend.py).
@functools.lru_cache(maxsize=8192)
def _line_head_tokens(ref: str) -> int:
    return count_tokens(LINE_ENCODER.encode({"ref": ref, "score": 0})[: -len(" 0}")])


@functools.lru_cache(maxsize=4096)
def _line_tail_tokens(score: float) -> int:
    line = LINE_ENCODER.encode({"score": score, "text": ""})
    return count_tokens(line[len('{"score":') :])


def _rules_digest(ws: Workspace, which: Any) -> str:
    """A digest of the rule set in use, computed once per rule set object (rules change rarely)."""
    ruleset = ws.rules(which)
    cached = ws.derived.get(f"rules_digest:{which}")
    if cached is None or cached[0] is not ruleset:
        digest = hashlib.sha1(ruleset.model_dump_json().encode()).hexdigest()[:16]
        cached = ws.derived[f"rules_digest:{which}"] = (ruleset, digest)
    return cached[1]


def facet_key(
    ws: Workspace,
    ctx: MemRecContext,
    user_id: str,
    packed: list[NeighbourSnippet],
    versions: dict[str, int],
    request: str | None,
) -> FacetKey:
    """What the facets depend on: versions of the memories used, rules, budgets, model, request."""
    user = ws.memories.get("user", user_id)
    rules = _rules_digest(ws, ctx.rules)
    return (
        user_id,
        user.version if user is not None else 0,
        tuple((n.ref, versions.get(n.ref, 0), round(n.score, 4)) for n in packed),
        ctx.rules,
        rules,
        ctx.tau,
        ctx.n_facets,
        role_specs(ctx)[0],
        ctx.base_url or "",
        request or "",
    )


async def synthesize(state: RecommendState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: no neighbours (cold start, no collaborative read) means no facets."""
    ctx = runtime.context or MemRecContext()
    neighbours = state.get("neighbours") or []
    if not neighbours:
        return {"context": [], "facets": []}
    ws = await aworkspace_for(ctx)
    packed, versions = pack_neighbours_versioned(ws, neighbours, ctx.tau)
    shown = shown_to_caller(packed)  # what the caller may read back from the thread state
    if ctx.curation == "raw":  # naive-collab: the raw context goes straight to the ranker
        return {"context": shown, "facets": []}
    started = time.perf_counter()
    cache = facet_cache_for(ws)
    key = facet_key(ws, ctx, state["user_id"], packed, versions, state.get("request"))
    cached = cache.get(key)
    if cached is not None:
        usage = CallUsage(model="cache", latency_ms=(time.perf_counter() - started) * 1000.0)
        return {"context": shown, "facets": cached, "usage": {"synthesize": usage}}
    lmmem, _ = build_roles(ctx, ws)
    out = await lmmem.synthesize(
        SynthesisInput(
            user_id=state["user_id"],
            dataset=ws.name,
            user_memory=state.get("user_memory", ""),
            neighbours=packed,
            max_facets=ctx.n_facets,
            request=state.get("request"),
        )
    )
    facets = out.value.facets[: ctx.n_facets]
    if not out.usage.fallbacks:  # a fallback answer is not what this model would say: no cache
        cache.put(key, facets, (f"user:{state['user_id']}", *(n.ref for n in packed)))
    return {
        "context": shown,
        "facets": facets,
        "usage": {"synthesize": out.usage},
        "notes": fallback_notices({"synthesize": out.usage}),
    }
