"""The `retrieve` node of the chat graph: candidates for the recommend step, from the catalog.

Candidates come from the whole catalog: a collaborative score (ItemKNN over the user's history and
the items liked in the conversation), Chroma semantic search over item memories for the request,
and a small popularity prior; unseen items only, constraints applied. The chat graph's `recommend`
node (``nodes/recommend.py``) then ranks them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from langgraph.runtime import Runtime

from memory_store.workspace import Workspace, workspace_for
from schemas.chat_state import ChatState, Constraints
from schemas.context import MemRecContext

N_CANDIDATES = 20
HISTORY_SEEDS = 50  # the user's most recent items used as collaborative seeds
LIKED_WEIGHT = 3.0  # an item liked in the conversation counts as this many history items
SEMANTIC_POOL = 200
WEIGHTS = {"collaborative": 0.5, "semantic": 0.4, "popularity": 0.1}
_YEAR = re.compile(r"\((\d{4})\)\s*$")
STOP_WORDS = frozenset(
    "i me my a an the and or but to for of in on with about something some anything movie "
    "movies film films show give recommend want like would could can please me more any "
    "that this is it be im i'm mood tonight watch".split()
)


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
    """Boolean mask of items that satisfy the constraints."""
    attrs = ws.dataset.item_attributes or [[] for _ in range(ws.dataset.n_items)]
    include, exclude, decades = (
        set(constraints.include),
        set(constraints.exclude),
        constraints.decades,
    )
    mask = np.ones(ws.dataset.n_items, bool)
    for code, item_attrs in enumerate(attrs):
        names = set(item_attrs)
        if include and not include & names:
            mask[code] = False
        elif exclude & names:
            mask[code] = False
        elif decades and not _in_decades(names, ws.dataset.item_titles[code], decades):
            mask[code] = False
    return mask


def _in_decades(attrs: set[str], title: str, decades: Sequence[str]) -> bool:
    if attrs & set(decades):
        return True
    year = _YEAR.search(title)
    return year is not None and f"{int(year.group(1)) // 10 * 10}s" in decades


def collaborative_scores(ws: Workspace, seeds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ItemKNN score of every item given weighted seed items."""
    n = ws.dataset.n_items
    if not len(seeds):
        return np.zeros(n)
    return ws.graph.similar_scores(seeds, weights, np.arange(n))


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


def retrieve_candidates(
    ws: Workspace,
    user_id: str,
    request: str | None,
    constraints: Constraints,
    liked: Sequence[str] = (),
    rejected: Sequence[str] = (),
    n: int = N_CANDIDATES,
) -> Retrieval:
    """The ``n`` best unseen catalog items for this user, request and constraints."""
    codes_of = ws.dataset.item_index
    history = np.zeros(0, np.int64)
    if ws.has_user(user_id):
        history = ws.graph.user_items(ws.user_code(user_id)).astype(np.int64)
    liked_codes = np.asarray([codes_of[i] for i in liked if i in codes_of], np.int64)
    recent = history[-HISTORY_SEEDS:]
    seeds = np.concatenate([recent, liked_codes])
    weights = np.concatenate([np.ones(len(recent)), np.full(len(liked_codes), LIKED_WEIGHT)])
    query = " ".join([content_words(request or ""), *(ws.title(c) for c in liked_codes)])
    parts = {
        "collaborative": _scaled(collaborative_scores(ws, seeds, weights)),
        "semantic": _scaled(semantic_scores(ws, query)),
        "popularity": _scaled(ws.popularity()),  # train + live interactions, no held-out ones
    }
    total = np.zeros(ws.dataset.n_items)
    for name, part in parts.items():
        total += WEIGHTS[name] * part
    unseen = np.ones(ws.dataset.n_items, bool)
    unseen[history] = False
    unseen[liked_codes] = False
    unseen[[codes_of[i] for i in rejected if i in codes_of]] = False
    notes = []
    mask = unseen & allowed_items(ws, constraints)
    if not constraints.is_empty() and not mask.any():
        notes.append("nothing unseen matches all your constraints, so I relaxed them")
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
    ws = await asyncio.to_thread(workspace_for, ctx)
    user_id = state["user_id"]
    found = await asyncio.to_thread(
        retrieve_candidates,
        ws,
        user_id,
        state.get("request"),
        state.get("constraints") or Constraints(),
        state.get("liked") or [],
        state.get("rejected") or [],
    )
    notes = list(state.get("notes") or []) + found.notes
    return {"candidates": found.candidates, "notes": notes}
