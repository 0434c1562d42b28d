"""The offline roles: deterministic LMMem and LLMRec from collaborative statistics, no network.

They implement the same interfaces as the LLM-backed roles and are the embedded default:
- rules are written from the same domain statistics an LLM would see;
- facets are the weighted attributes of the curated neighbours, with those neighbours as evidence;
- ranking mixes facet match, item-item collaborative score over the user's history, votes of the
  curated neighbour users, a popularity prior and the memory channel: how close each candidate's
  CURRENT item memory (as the input carries it, notes from propagation included) is to the
  user's own memory and request; the rationale of each item names the evidence that contributed
  most;
- propagation re-summarises the user, notes on the item what kind of users chose it and patches
  the neighbours with the co-interaction.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, defaultdict

import numpy as np

from memory_store.summaries import append_note, notes_of, user_summary
from memory_store.workspace import Workspace
from roles.offline_rules import offline_rules
from schemas.records import (
    CallUsage,
    Facet,
    FacetSet,
    NeighbourPatch,
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
from schemas.ruleset import DomainStats, RuleSet

# Mixing weights of the offline ranker, chosen on the ml-100k validation split (see README).
W_OWN_CF = 1.0
W_VOTES = 0.6
W_FACETS = 0.5
W_MEMORY = 0.1  # small on purpose: a first reading of memory text, to be tuned on validation
W_POP = 0.35
W_REQUEST = 1.5
W_HISTORY = 0.2  # vanilla: title similarity to the history (no memory, no collaborative data)
W_NEIGHBOUR_ITEMS = 0.0
HISTORY_DECAY = 5.0  # positions: recent history weighs more in the own collaborative score
OWN_HISTORY = 100  # items of the history the own score reads (weights past ~50 are ~0)


_REASONS = {
    "request": "matches your request",
    "memory": "what others wrote into its memory matches your profile",
    "history": "similar to titles in your history",
    "neighbour_items": "co-chosen with your neighbours' items",
    "popularity": "popular with many users",
    "own": "close to your history",
}


def mixing_weights() -> dict[str, float]:
    """Weight of each evidence channel in the offline ranking score."""
    return {
        "popularity": W_POP,
        "history": W_HISTORY,
        "own": W_OWN_CF,
        "memory": W_MEMORY,
        "votes": W_VOTES,
        "neighbour_items": W_NEIGHBOUR_ITEMS,
        "facets": W_FACETS,
        "request": W_REQUEST,
    }


def _usage(start: float) -> CallUsage:
    return CallUsage(latency_ms=(time.perf_counter() - start) * 1000.0)


def _scaled(x: np.ndarray) -> np.ndarray:
    top = float(np.max(np.abs(x))) if x.size else 0.0
    return x / top if top > 0 else np.zeros_like(x, dtype=np.float64)


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
        """The synthesis itself (sync, used by fallbacks too)."""
        ds, graph = self.ws.dataset, self.ws.graph
        weight: dict[str, float] = defaultdict(float)
        evidence: dict[str, list[tuple[float, str]]] = defaultdict(list)
        top_score = max((n.score for n in inp.neighbours), default=1.0) or 1.0
        for n in inp.neighbours:
            kind, entity = _split_ref(n.ref)
            w = max(n.score, 0.0) / top_score + 0.05
            if kind == "item" and entity in ds.item_index:
                attrs = ds.item_attributes[ds.item_index[entity]] if ds.item_attributes else []
                shares = {a: 1.0 / max(len(attrs), 1) for a in attrs}
            elif kind == "user" and entity in ds.user_index:
                profile = graph.user_profiles(np.array([ds.user_index[entity]]))[0]
                top = np.argsort(-profile)[:4]
                shares = {graph.attribute_names[a]: float(profile[a]) for a in top if profile[a]}
            else:
                continue
            for attr, share in shares.items():
                weight[attr] += w * share
                evidence[attr].append((w * share, n.ref))
        ranked = sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))[: inp.max_facets]
        best = ranked[0][1] if ranked else 1.0
        facets = []
        for attr, w in ranked:
            refs = [r for _, r in sorted(evidence[attr], key=lambda e: (-e[0], e[1]))[:4]]
            facets.append(
                Facet(
                    name=attr,
                    description=(
                        f"{len(evidence[attr])} of {len(inp.neighbours)} curated neighbours "
                        f"point to {attr}."
                    ),
                    confidence=round(min(1.0, w / best), 3),
                    evidence=refs,
                )
            )
        return FacetSet(facets=facets)

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


EMBED_CACHE = 8192  # memory texts whose embedding the ranker keeps (items recur across requests)


class OfflineLLMRec:
    """Deterministic ranker over a workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._vectors_lock = threading.Lock()

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts``, from a bounded cache keyed by the text (a new text misses)."""
        with self._vectors_lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
            if missing:
                fresh = self.ws.vectors.embedding.embed_texts(missing)
                self._vectors.update(zip(missing, np.asarray(fresh, np.float64), strict=True))
            for t in texts:
                self._vectors.move_to_end(t)
            while len(self._vectors) > EMBED_CACHE:
                self._vectors.popitem(last=False)
            return np.stack([self._vectors[t] for t in texts])

    async def rank(self, inp: RankingInput) -> RoleOutput[Ranking]:
        """Rank every candidate with a rationale built from its evidence."""
        start = time.perf_counter()
        return RoleOutput(value=self.ranking(inp), usage=_usage(start))

    def ranking(self, inp: RankingInput) -> Ranking:
        """The ranking itself (sync, used by fallbacks and to complete partial LLM rankings)."""
        codes, parts = self.components(inp)
        user = self.ws.dataset.user_index.get(inp.user_id)
        scaled = {k: _scaled(v) for k, v in parts.items()}
        weights = mixing_weights()
        total = sum((weights[k] * v for k, v in scaled.items()), np.zeros(len(codes)))
        order = np.lexsort((codes, -np.round(total, 9)))
        return Ranking(
            items=[
                RankedItem(
                    item_id=inp.candidates[j].item_id,
                    score=round(float(total[j]), 4),
                    rationale=text,
                    evidence=cited,
                )
                for j in order
                for text, cited in [self._explain(inp, user, codes[j], j, scaled, weights)]
            ]
        )

    def components(self, inp: RankingInput) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Each evidence channel's raw score per candidate (before scaling and mixing)."""
        ws = self.ws
        ds, graph = ws.dataset, ws.graph
        codes = np.array([ds.item_index[c.item_id] for c in inp.candidates], dtype=np.int64)
        user = ds.user_index.get(inp.user_id)
        parts: dict[str, np.ndarray] = {}
        deg = graph.item_degree
        parts["popularity"] = np.log1p(deg[codes]) / max(np.log1p(deg.max()), 1.0)
        if inp.history_titles:
            parts["history"] = self._text_match(" ".join(inp.history_titles), codes)
        if inp.user_memory and user is not None:
            history = graph.user_item_times(user)[0][-OWN_HISTORY:]
            if len(history):
                w = np.exp(-np.arange(len(history) - 1, -1, -1) / HISTORY_DECAY)
                parts["own"] = graph.similar_scores(history, w, codes)
        if inp.user_memory:
            parts["memory"] = self._memory_match(inp, codes)
        voters = [n for n in [*inp.curated, *inp.raw_neighbours] if n.kind == "user"]
        if voters:
            users = np.array([ds.user_index[_split_ref(n.ref)[1]] for n in voters])
            scores = np.array([max(n.score, 0.0) for n in voters]) + 1e-3
            parts["votes"] = graph.votes(users, scores / scores.max(), codes)
        items = [n for n in [*inp.curated, *inp.raw_neighbours] if n.kind == "item"]
        if items:
            item_codes = np.array([ds.item_index[_split_ref(n.ref)[1]] for n in items])
            weights = np.array([max(n.score, 0.0) for n in items]) + 1e-3
            parts["neighbour_items"] = graph.similar_scores(item_codes, weights, codes)
        if inp.facets:
            parts["facets"] = self._facet_match(inp, codes)
        if inp.request:
            parts["request"] = self._text_match(inp.request, codes)
        return codes, parts

    def _memory_match(self, inp: RankingInput, codes: np.ndarray) -> np.ndarray:
        """Cosine of the user's memory (+ request) with each candidate's memory from the input.

        The user's memory vector comes from the store's vector cache (kept in step with every
        write) unless a request joins it; a candidate the input carries without memory (vanilla)
        is read from the vector cache too.
        """
        user = self.ws.dataset.user_index.get(inp.user_id)
        if user is not None and not inp.request:  # the store's vector of that same memory text
            query = self.ws.vectors.users[user].astype(np.float64)
        else:
            query = self._embed([" ".join(t for t in (inp.user_memory, inp.request or "") if t)])[0]
        texts = [c.memory for c in inp.candidates]
        items = self.ws.vectors.items[codes].astype(np.float64)
        written = [j for j, t in enumerate(texts) if t]
        if written:
            items[written] = self._embed([texts[j] for j in written])
        return np.asarray(items @ query, np.float64)

    def _text_match(self, text: str, codes: np.ndarray) -> np.ndarray:
        vec = self.ws.vectors.embedding.embed_texts([text])[0]
        return self.ws.vectors.items[codes] @ vec

    def _facet_match(self, inp: RankingInput, codes: np.ndarray) -> np.ndarray:
        graph = self.ws.graph
        names = {n: i for i, n in enumerate(graph.attribute_names)}
        fvec = np.zeros(len(names))
        texts = []
        for f in inp.facets:
            if f.name in names:
                fvec[names[f.name]] += f.confidence
            else:
                texts.append(f"{f.name}. {f.description}")
        score = graph.attribute_dot(codes, fvec) if fvec.any() else 0.0
        if texts:
            score = score + self._text_match(" ".join(texts), codes)
        return np.asarray(score, np.float64) * np.ones(len(codes))

    def _facets_of(self, inp: RankingInput, code: int) -> list[str]:
        attrs = (
            set(self.ws.dataset.item_attributes[code]) if self.ws.dataset.item_attributes else set()
        )
        return [f.name for f in inp.facets if f.name in attrs][:3]

    def _explain(
        self,
        inp: RankingInput,
        user: int | None,
        code: int,
        j: int,
        scaled: dict[str, np.ndarray],
        weights: dict[str, float],
    ) -> tuple[str, list[str]]:
        """A rationale from the two strongest evidence channels, and the refs it cites."""
        ws = self.ws
        reasons: list[str] = []
        cited: list[str] = []
        contrib = sorted(
            ((weights[k] * v[j], k) for k, v in scaled.items() if v[j] > 0), reverse=True
        )
        for _, part in contrib[:2]:
            if part == "votes":
                voters = [
                    n.ref
                    for n in [*inp.curated, *inp.raw_neighbours]
                    if n.kind == "user" and ws.graph.has(ws.user_code(_split_ref(n.ref)[1]), code)
                ]
                cited.extend(voters[:3])
                reasons.append(
                    f"chosen by {len(voters)} of your curated neighbours ({', '.join(voters[:3])})"
                )
            elif part == "own" and user is not None:
                recent = ws.graph.user_item_times(user)[0][-50:]
                anchor = int(recent[int(np.argmax(ws.graph.co_counts(np.array([code]))[recent]))])
                cited.append(f"item:{ws.dataset.item_ids[anchor]}")
                reasons.append(f"often chosen with {ws.title(anchor)}, which you chose")
            elif part == "facets":
                names = self._facets_of(inp, code)
                if names:
                    cited.extend(names)
                    plural = "s" if len(names) > 1 else ""
                    reasons.append(f"matches your facet{plural} " + ", ".join(map(repr, names)))
            else:
                reasons.append(_REASONS[part])
        if user is None:
            reasons.append("new user: ranked from your request and popularity")
        text = "; ".join(reasons or ["no specific evidence; ranked by the popularity prior"])
        return text + ".", cited
