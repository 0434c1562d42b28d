"""The offline LLMRec ranking and the offline facets, over the tuned channels of the ranker.

``offline_ranking`` scores the candidates with ``roles/offline_ranker.py`` (weights from the
store's ``ranker.json``), orders them by the one tie rule (``dataio/ties.py``) and explains each
item by the channels that contributed most to its score, citing their evidence: the history item
it is most similar to, the item it usually follows, the curated neighbours who chose it, the
facets it matches. ``offline_facets`` is the offline synthesis: the attributes the curated
neighbour users favour, each user weighted by the same affinity the ``votes`` channel uses, so
the facets shown are the facets that score.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from dataio.ties import ranking_order, user_key
from memory_store.ranker_index import RankerIndex
from memory_store.sequences import recency_weights
from memory_store.sparse_rows import gather_rows
from memory_store.workspace import Workspace
from roles.offline_ranker import Reads, contributions, request_channels
from schemas.records import (
    Facet,
    FacetSet,
    NeighbourSnippet,
    RankedItem,
    Ranking,
    RankingInput,
    SynthesisInput,
)

# Channels no validation data can tune (no request text, no title-only method in the data): a
# fixed share of the tuned weights' sum, on a per-request max-scaled similarity.
UNTUNED_SHARE = {"request": 0.5, "history": 0.1}
_PHRASES = {
    "own_attr": "matches the kinds of items you choose",
    "pop": "popular with many users",
    "trend": "popular lately",
    "mem_user": "close to your memory profile",
    "mem_item": "close to the memories of the items you chose recently",
    "request": "matches your request",
    "history": "similar to titles in your history",
}


def _code(ws: Workspace, ref: str) -> int | None:
    kind, _, entity = ref.partition(":")
    index = ws.dataset.user_index if kind == "user" else ws.dataset.item_index
    return index.get(entity)


def voters(
    ws: Workspace, index: RankerIndex, user: int, neighbours: list[NeighbourSnippet]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The curated (or raw) neighbour users, weighted by their affinity to the user."""
    pairs = [
        (n, c) for n in neighbours if n.kind == "user" for c in [_code(ws, n.ref)] if c is not None
    ]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0), []
    codes = np.asarray([c for _, c in pairs], np.int64)
    history, _ = ws.graph.user_item_times(user)
    weights = index.affinity(history, codes)
    if not weights.any():  # no shared history: the curation scores decide
        weights = np.asarray([max(n.score, 0.0) for n, _ in pairs]) + 1e-3
    return codes, weights, [n.ref for n, _ in pairs]


def facet_vector(ws: Workspace, inp: RankingInput) -> np.ndarray | None:
    """The facets as a dense attribute vector (confidence per named attribute), or None."""
    names = {n: i for i, n in enumerate(ws.graph.attribute_names)}
    known = [f for f in inp.facets if f.name in names]
    if not known:
        return None
    vec = np.zeros(len(names))
    for f in known:
        vec[names[f.name]] += f.confidence
    return vec


def _text_match(ws: Workspace, text: str, codes: np.ndarray) -> np.ndarray:
    vec = ws.vectors.embedding.embed_texts([text])[0]
    sims = np.maximum(ws.vectors.items[codes] @ vec, 0.0).astype(np.float64)
    top = float(sims.max()) if sims.size else 0.0
    return sims / top if top > 0 else sims


def offline_ranking(ws: Workspace, inp: RankingInput) -> Ranking:
    """Rank every candidate by the tuned blend, with a rationale from its strongest channels."""
    index, config = ws.ranker()
    ds = ws.dataset
    codes = np.asarray([ds.item_index[c.item_id] for c in inp.candidates], np.int64)
    user = ds.user_index.get(inp.user_id)
    found = (
        voters(ws, index, user, [*inp.curated, *inp.raw_neighbours]) if user is not None else None
    )
    channels = request_channels(
        index,
        ws.vectors,
        user,
        codes,
        Reads(own=bool(inp.user_memory)),
        voters=found[:2] if found else None,
        facets=facet_vector(ws, inp),
    )
    parts = contributions(channels, config.weights, config.scales)
    total_weight = sum(config.weights.values()) or 1.0
    texts = {"request": inp.request, "history": " ".join(inp.history_titles)}
    for name, text in texts.items():
        if text:
            parts[name] = UNTUNED_SHARE[name] * total_weight * _text_match(ws, text, codes)
    total = sum(parts.values(), np.zeros(len(codes)))
    order = ranking_order(total[None, :], np.array([user_key(inp.user_id, user)]), codes[None, :])
    cast = list(zip(found[2], found[0].tolist(), strict=True)) if found else []
    explain = _Explainer(ws, index, user, inp, cast)
    items = []
    for j in order[0].tolist():
        text, cited = explain(int(codes[j]), {n: float(v[j]) for n, v in parts.items()})
        items.append(
            RankedItem(
                item_id=inp.candidates[j].item_id,
                score=round(float(total[j]), 4),
                rationale=text,
                evidence=cited,
            )
        )
    return Ranking(items=items)


class _Explainer:
    """Rationales from the two strongest channels of an item, with the evidence they cite."""

    def __init__(
        self,
        ws: Workspace,
        index: RankerIndex,
        user: int | None,
        inp: RankingInput,
        cast: list[tuple[str, int]],
    ) -> None:
        self.ws, self.index, self.user, self.inp = ws, index, user, inp
        self.cast = cast  # the neighbour users who voted: (ref, code)
        history = ws.graph.user_item_times(user)[0] if user is not None else np.zeros(0, np.int64)
        self.history = history
        self.weight = np.zeros(ws.graph.n_items)
        w = recency_weights(np.arange(len(history) - 1, -1, -1), index.params.tau)
        np.add.at(self.weight, history, w)
        self._steps: np.ndarray | None = None

    def _recent_steps(self) -> np.ndarray:
        """Per item, the transition decay of its place among the user's latest items (once)."""
        if self._steps is None:
            last = self.history[-self.index.params.window :]
            self._steps = np.zeros(self.ws.graph.n_items)
            self._steps[last] = self.index.params.decay ** np.arange(len(last) - 1, -1, -1)
        return self._steps

    def __call__(self, code: int, parts: dict[str, float]) -> tuple[str, list[str]]:
        reasons: list[str] = []
        cited: list[str] = []
        ranked = sorted(((v, n) for n, v in parts.items() if v > 0), reverse=True)
        for _, name in ranked[:2]:
            reason, refs = self._reason(name, code)
            if reason:
                reasons.append(reason)
                cited.extend(refs)
        if self.user is None:
            reasons.append("new user: ranked from your request and popularity")
        text = "; ".join(reasons or ["no specific evidence; ranked by the popularity prior"])
        return text + ".", cited

    def _reason(self, name: str, code: int) -> tuple[str, list[str]]:
        if name in ("knn", "trans", "trans_back"):
            return self._anchor(name, code)
        if name == "votes":
            chose = [ref for ref, v in self.cast if self.ws.graph.has(v, code)]
            if not chose:
                return "", []
            return (
                f"chosen by {len(chose)} of your {len(self.cast)} curated neighbours "
                f"({', '.join(chose[:3])})",
                chose[:3],
            )
        if name == "facets":
            attrs = (
                set(self.ws.dataset.item_attributes[code])
                if self.ws.dataset.item_attributes
                else set()
            )
            names = [f.name for f in self.inp.facets if f.name in attrs][:3]
            if not names:
                return "", []
            plural = "s" if len(names) > 1 else ""
            return f"matches your neighbours' facet{plural} " + ", ".join(map(repr, names)), names
        return _PHRASES.get(name, ""), []

    def _anchor(self, name: str, code: int) -> tuple[str, list[str]]:
        """The history item behind a kNN or transition score."""
        index = self.index
        rows = {"knn": index.knn_rows, "trans": index.trans_rows, "trans_back": index.back_rows}
        cols, vals, _ = gather_rows(rows[name], np.array([code]))
        if name == "knn":
            strength = vals * self.weight[cols]
        else:
            strength = vals * self._recent_steps()[cols]
        if not len(cols) or strength.max() <= 0:
            return "", []
        anchor = int(cols[int(np.argmax(strength))])
        title = self.ws.title(anchor)
        ref = f"item:{self.ws.dataset.item_ids[anchor]}"
        text = {
            "knn": f"often chosen with {title}, which you chose",
            "trans": f"often chosen after {title}, which you chose recently",
            "trans_back": f"often chosen just before {title}, which you chose recently",
        }[name]
        return text, [ref]


def offline_facets(
    ws: Workspace, inp: SynthesisInput, index: RankerIndex | None = None
) -> FacetSet:
    """Facets = the attributes the curated neighbours favour (the ``facets`` channel's input).

    Each neighbour user counts with its affinity to the user (as in ``votes``) and its recency-
    weighted attribute profile; item neighbours (the user's own items) only when there are no
    user neighbours. Evidence: the neighbours contributing most to each facet.
    """
    index = index or ws.ranker()[0]
    user = ws.dataset.user_index.get(inp.user_id)
    users = [n for n in inp.neighbours if n.kind == "user" and _code(ws, n.ref) is not None]
    if users and user is not None and ws.graph.attribute_names:
        return _user_facets(ws, index, user, inp, users)
    weight: dict[str, float] = defaultdict(float)
    evidence: dict[str, list[tuple[float, str]]] = defaultdict(list)
    if ws.dataset.item_attributes:
        top_score = max((n.score for n in inp.neighbours), default=1.0) or 1.0
        for n in inp.neighbours:
            code = _code(ws, n.ref)
            if n.kind != "item" or code is None:
                continue
            attrs = ws.dataset.item_attributes[code]
            for name in attrs:
                share = (max(n.score, 0.0) / top_score + 0.05) / max(len(attrs), 1)
                weight[name] += share
                evidence[name].append((share, n.ref))
    ranked = sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))[: inp.max_facets]
    cited = {
        attr: [r for _, r in sorted(evidence[attr], key=lambda e: (-e[0], e[1]))[:4]]
        for attr, _ in ranked
    }
    counts = {attr: len(evidence[attr]) for attr, _ in ranked}
    return _facet_set(ranked, cited, counts, len(inp.neighbours))


def _user_facets(
    ws: Workspace,
    index: RankerIndex,
    user: int,
    inp: SynthesisInput,
    users: list[NeighbourSnippet],
) -> FacetSet:
    """Facets from the neighbour users' profiles, each weighted by its affinity (vectorised)."""
    codes, affinity, refs = voters(ws, index, user, users)
    shares = affinity[:, None] * index.profile_matrix(codes)
    totals = shares.sum(axis=0)
    names = np.asarray(ws.graph.attribute_names)
    positive = np.flatnonzero(totals > 0)
    order = positive[np.lexsort((names[positive], -totals[positive]))][: inp.max_facets]
    ranked = [(str(names[a]), float(totals[a])) for a in order]
    cited, counts = {}, {}
    for a, (attr, _) in zip(order.tolist(), ranked, strict=True):
        column = shares[:, a]
        backers = sorted(
            (j for j in range(len(refs)) if column[j] > 0), key=lambda j: (-column[j], refs[j])
        )
        cited[attr] = [refs[j] for j in backers[:4]]
        counts[attr] = len(backers)
    return _facet_set(ranked, cited, counts, len(inp.neighbours))


def _facet_set(
    ranked: list[tuple[str, float]],
    cited: dict[str, list[str]],
    counts: dict[str, int],
    n_neighbours: int,
) -> FacetSet:
    best = ranked[0][1] if ranked and ranked[0][1] > 0 else 1.0
    return FacetSet(
        facets=[
            Facet(
                name=attr,
                description=f"{counts[attr]} of {n_neighbours} curated neighbours point to {attr}.",
                confidence=round(min(1.0, w / best), 3),
                evidence=cited[attr],
            )
            for attr, w in ranked
            if w > 0
        ]
    )
