"""The `retrieve` node of the chat graph: candidates for the recommend step, from the catalog.

Candidates come from the whole catalog: a collaborative score (ItemKNN over the user's history,
the items liked in the conversation and the "something like X" seeds), Chroma semantic search
over item memories for the request, and a small popularity prior. Left out: what the user has
seen or disliked, what this conversation skipped, and, on "something else", everything shown so
far. Constraints (catalogue attributes, decades, year bounds) come from the catalogue index. The
chat graph's `recommend` subgraph then ranks them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from memory_store.workspace import Workspace, aworkspace_for
from roles.catalogue_index import catalogue_index
from schemas.chat_state import DEFAULT_COUNT, ChatState, Constraints
from schemas.coerce import coerce
from schemas.context import MemRecContext

N_CANDIDATES = 20
HISTORY_SEEDS = 50  # the user's most recent items used as collaborative seeds
LIKED_WEIGHT = 3.0  # an item liked in the conversation counts as this many history items
SIMILAR_WEIGHT = 6.0  # "something like X": X counts as this many history items
SEMANTIC_POOL = 200
WEIGHTS = {"collaborative": 0.5, "semantic": 0.4, "popularity": 0.1}
STOP_WORDS = frozenset(
    "i me my a an the and or but to for of in on with about something some anything give "
    "recommend want like would could can please more any that this is it be im i'm mood "
    "tonight".split()
)
RELAXED = "nothing unseen matches all your constraints, so I relaxed them"


@dataclass
class Retrieval:
    """Retrieved candidates with the parts of their scores and notes for the reply."""

    candidates: list[str]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def content_words(text: str) -> str:
    """``text`` without stop words, so hashed embeddings match on what the user asked for."""
    return " ".join(w for w in re.findall(r"[\w'-]+", text.lower()) if w not in STOP_WORDS)


def _scaled(x: np.ndarray) -> np.ndarray:
    top = float(np.max(x)) if len(x) else 0.0
    return x / top if top > 0 else np.zeros_like(x)


def allowed_items(ws: Workspace, constraints: Constraints) -> np.ndarray:
    """Boolean mask of items that satisfy the constraints (the catalogue index's filters)."""
    c = constraints
    return catalogue_index(ws.dataset).allowed(
        c.include, c.exclude, c.decades, c.year_min, c.year_max
    )


def semantic_scores(ws: Workspace, query: str) -> np.ndarray:
    """Similarity of every item memory to ``query`` (0 outside the top SEMANTIC_POOL)."""
    out = np.zeros(ws.dataset.n_items)
    if not query.strip():
        return out
    for record, sim in ws.memories.search("item", query, SEMANTIC_POOL):
        code = ws.dataset.item_index.get(record.entity_id)
        if code is not None:
            out[code] = max(sim, 0.0)
    return out


def _codes(ws: Workspace, ids: Sequence[str]) -> np.ndarray:
    index = ws.dataset.item_index
    return np.asarray([index[i] for i in ids if i in index], np.int64)


def _score_parts(
    ws: Workspace,
    history: np.ndarray,
    seeds: list[tuple[float, np.ndarray]],
    request: str | None,
) -> dict[str, np.ndarray]:
    recent = history[-HISTORY_SEEDS:]
    codes = np.concatenate([recent, *(c for _, c in seeds)])
    weights = np.concatenate([np.ones(len(recent)), *(np.full(len(c), w) for w, c in seeds)])
    named = [ws.title(int(c)) for _, part in seeds for c in part]
    query = " ".join([content_words(request or ""), *named])
    n = ws.dataset.n_items
    collaborative = (
        ws.graph.similar_scores(codes, weights, np.arange(n)) if len(codes) else np.zeros(n)
    )
    return {
        "collaborative": _scaled(collaborative),
        "semantic": _scaled(semantic_scores(ws, query)),
        "popularity": _scaled(ws.dataset.item_popularity().astype(np.float64)),
    }


def retrieve_candidates(
    ws: Workspace,
    user_id: str,
    request: str | None,
    constraints: Constraints,
    liked: Sequence[str] = (),
    excluded: Sequence[str] = (),
    n: int = N_CANDIDATES,
    similar: Sequence[str] = (),
) -> Retrieval:
    """The ``n`` best unseen, not excluded catalog items for this user, request and constraints."""
    history = np.zeros(0, np.int64)
    disliked: set[int] = set()
    if ws.has_user(user_id):
        user = ws.user_code(user_id)
        history = ws.graph.user_items(user).astype(np.int64)
        disliked = set(ws.graph.rejected.get(user, ()))
    liked_codes, similar_codes = _codes(ws, liked), _codes(ws, similar)
    parts = _score_parts(
        ws, history, [(LIKED_WEIGHT, liked_codes), (SIMILAR_WEIGHT, similar_codes)], request
    )
    total = np.zeros(ws.dataset.n_items)
    for name, part in parts.items():
        total += WEIGHTS[name] * part
    unseen = np.ones(ws.dataset.n_items, bool)
    for codes in (history, liked_codes, similar_codes, _codes(ws, excluded)):
        unseen[codes] = False
    unseen[list(disliked)] = False
    notes = []
    mask = unseen & allowed_items(ws, constraints)
    if not constraints.is_empty() and not mask.any():
        notes.append(RELAXED)
        mask = unseen
    order = [int(c) for c in np.lexsort((np.arange(len(total)), -total)) if mask[c]][:n]
    ids = [ws.dataset.item_ids[c] for c in order]
    scores = {
        ws.dataset.item_ids[c]: {name: round(float(p[c]), 4) for name, p in parts.items()}
        for c in order
    }
    return Retrieval(ids, scores, notes)


async def retrieve(state: ChatState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: candidates from the catalog (blocking work off the event loop)."""
    ctx = runtime.context or MemRecContext()
    ws = await aworkspace_for(ctx)
    excluded = list(state.get("rejected") or [])
    if state.get("exclude_shown"):
        excluded += state.get("shown") or []
    count = state.get("count") or DEFAULT_COUNT
    found = await asyncio.to_thread(
        retrieve_candidates,
        ws,
        state["user_id"],
        state.get("request"),
        coerce(Constraints, state.get("constraints") or Constraints()),
        state.get("liked") or [],
        excluded,
        max(N_CANDIDATES, 2 * count),
        state.get("similar") or [],
    )
    notes = list(found.notes)
    if not found.candidates:
        notes.append("I found no unseen item to suggest")
    return {"candidates": found.candidates, "notes": notes}
