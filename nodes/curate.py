"""The `curate` node: validate the request, then pick the top-k neighbours by the rule set."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from memory_store.features import neighbour_features
from memory_store.workspace import Workspace, aworkspace_for
from schemas.context import MemRecContext
from schemas.recommend_state import CuratedNeighbour, RecommendState
from schemas.records import CallUsage
from schemas.ruleset import RuleSet
from schemas.tenancy import check_acting_user

MAX_CANDIDATES = 200
MAX_REQUEST_CHARS = 4000
MAX_ID_CHARS = 128


class InvalidRequest(ValueError):
    """A recommend input that cannot be served; the message says what is accepted."""


def validate_user_id(value: object) -> str:
    """A user id is a non-empty string (or an integer) of at most MAX_ID_CHARS characters."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidRequest(f"user_id must be a string, got {type(value).__name__}")
    user_id = str(value).strip()
    if not user_id or len(user_id) > MAX_ID_CHARS:
        raise InvalidRequest(f"user_id must have 1 to {MAX_ID_CHARS} characters")
    return user_id


def validate_candidates(ws: Workspace, user_id: str, candidates: object) -> list[str]:
    """Check candidate ids (known, unique, 1..MAX_CANDIDATES) or load the benchmark list."""
    if candidates is None:
        if not ws.has_user(user_id):
            raise InvalidRequest(
                f"user {user_id!r} is new: pass candidates (item ids) to rank for a new user"
            )
        lists = ws.benchmark_candidates("test", 10, 0)
        codes = lists.get(ws.user_code(user_id))
        if not codes:
            raise InvalidRequest(
                f"user {user_id!r} has no benchmark candidate list (fewer than 3 interactions): "
                "pass candidates explicitly"
            )
        return [ws.dataset.item_ids[i] for i in codes]
    if isinstance(candidates, str | bytes) or not isinstance(candidates, list | tuple):
        raise InvalidRequest('candidates must be a list of item ids, e.g. ["50", "181"]')
    if not candidates:
        raise InvalidRequest("candidates is empty: give 1 to 200 item ids, or omit it")
    if any(isinstance(c, bool) or not isinstance(c, str | int) for c in candidates):
        raise InvalidRequest("every candidate id must be a string (or an integer)")
    if len(candidates) > MAX_CANDIDATES:
        raise InvalidRequest(f"{len(candidates)} candidates: at most {MAX_CANDIDATES} are accepted")
    ids = [str(c) for c in candidates]
    dupes = sorted({c for c in ids if ids.count(c) > 1})
    if dupes:
        raise InvalidRequest(f"duplicate candidate ids {dupes[:5]}: each item once")
    unknown = [c for c in ids if c not in ws.dataset.item_index]
    if unknown:
        raise InvalidRequest(
            f"unknown candidate ids {unknown[:5]} for dataset {ws.name} "
            f"(ids look like {', '.join(ws.dataset.item_ids[:3])})"
        )
    return ids


def curate_neighbours(
    ws: Workspace, user: int, rules: RuleSet, ctx: MemRecContext
) -> list[CuratedNeighbour]:
    """Top-k neighbours (at least min_users users and min_items items) scored by the rule set."""
    users, items = neighbour_features(
        ws.graph,
        user,
        user_vectors=ws.vectors.users,
        user_norms=ws.vectors.norms("user"),
        item_vectors=ws.vectors.items,
        excluded=ws.opted_out,
    )
    sizes = [(nf.kind, len(nf.codes)) for nf in (users, items)]
    pools = []
    for nf in (users, items):
        if not len(nf.codes):
            continue
        ids = ws.dataset.user_ids if nf.kind == "user" else ws.dataset.item_ids
        if ctx.curation == "raw":  # naive-collab: an uncurated, seeded sample of the pool
            rng = np.random.default_rng(user)
            scores = np.ones(len(nf.codes))
            order = rng.permutation(len(nf.codes))
            fired: list[list[str]] = [[] for _ in nf.codes]
        else:
            scores, fired = rules.score_many(nf.kind, nf.features)
            order = np.lexsort((nf.codes, -scores))
        kept = order[: _reach(nf.kind, sizes, ctx)]
        names = list(nf.features)
        # the kept rows' features, rounded at once: one list of values per kept neighbour
        rows = zip(
            *(np.round(np.asarray(nf.features[f], np.float64)[kept], 4).tolist() for f in names),
            strict=True,
        )
        pools.append(
            [
                CuratedNeighbour(
                    ref=f"{nf.kind}:{ids[nf.codes[j]]}",
                    kind=nf.kind,  # type: ignore[arg-type]
                    score=round(float(scores[j]), 4),
                    rules=fired[j],
                    features=dict(zip(names, row, strict=True)),
                )
                for j, row in zip(kept.tolist(), rows, strict=True)
            ]
        )
    return _mix(pools, ctx)


def _reach(kind: str, sizes: list[tuple[str, int]], ctx: MemRecContext) -> int:
    """How deep into its pool ``_mix`` can choose a neighbour of ``kind``; the rest is not built.

    The other kind's guaranteed places come first, so a neighbour ranked past ``k`` minus them is
    never chosen (nor past ``k``); its own guaranteed places always count.
    """
    own_min, other_min = (
        (ctx.min_users, ctx.min_items) if kind == "user" else (ctx.min_items, ctx.min_users)
    )
    other = sum(min(ctx.k, n) for k2, n in sizes if k2 != kind)
    return min(ctx.k, max(ctx.k - min(other_min, other), own_min))


def _mix(pools: list[list[CuratedNeighbour]], ctx: MemRecContext) -> list[CuratedNeighbour]:
    """Guarantee the minimums per kind, then fill to k by score."""
    chosen: list[CuratedNeighbour] = []
    rest: list[CuratedNeighbour] = []
    for pool in pools:
        minimum = ctx.min_users if pool and pool[0].kind == "user" else ctx.min_items
        chosen.extend(pool[:minimum])
        rest.extend(pool[minimum:])
    rest.sort(key=lambda n: -n.score)
    chosen.extend(rest[: max(0, ctx.k - len(chosen))])
    if ctx.curation == "raw":
        return chosen[: ctx.k]
    return sorted(chosen, key=lambda n: -n.score)[: ctx.k]


async def curate(state: RecommendState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: validate input, load the user's memory, curate neighbours."""
    start = time.perf_counter()
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    if state.get("user_id") is None:
        raise InvalidRequest("user_id is required")
    user_id = validate_user_id(state.get("user_id"))
    check_acting_user(user_id)
    request = state.get("request")
    if request is not None and not isinstance(request, str):
        raise InvalidRequest(f"request must be text, got {type(request).__name__}")
    notes: list[str] = []
    if request and len(request) > MAX_REQUEST_CHARS:
        request = request[:MAX_REQUEST_CHARS]
        notes.append(f"request truncated to {MAX_REQUEST_CHARS} characters")
    candidates = validate_candidates(ws, user_id, state.get("candidates"))
    known = ws.has_user(user_id)
    neighbours: list[CuratedNeighbour] = []
    if not known:
        notes.append(f"user {user_id!r} is new: ranked from the request and popularity")
    elif ctx.collab_read and ctx.memory == "full":
        neighbours = curate_neighbours(ws, ws.user_code(user_id), ws.rules(ctx.rules), ctx)
    memory = ws.memory_text("user", user_id) if known and ctx.memory != "none" else ""
    usage = CallUsage(latency_ms=(time.perf_counter() - start) * 1000.0)
    return {
        "user_id": user_id,
        "candidates": candidates,
        "request": request,
        "neighbours": neighbours,
        "user_memory": memory,
        "cold_start": not known,
        "notes": notes,
        "usage": {"curate": usage},
    }
