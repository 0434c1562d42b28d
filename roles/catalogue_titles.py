"""The title half of a catalogue index: exact keys, then IDF-weighted fuzzy word matching.

A mention matches exactly when its key equals a title's key (100 as written, 99 its key, 98 the
short key before " - "); otherwise titles holding nearly every weighted word of it (typos by edit
distance, plurals, roman numerals) and whole-key near misses score below 97. Ties go to the more
popular item, so same-titled copies resolve to the one people use.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from roles.catalogue_text import ARABIC, ROMAN, query_keys, title_keys, verbatim_key, word_forms

MAX_MATCHES = 8  # title matches kept per mention (the options of a clarification)
MIN_FUZZY_COVER = 0.8  # IDF-weighted share of a mention's words a title must contain
FUZZY_CEILING = 97.0  # a fuzzy match always scores below an exact one
MIN_CLEAR_SCORE = 55.0  # a fuzzy match below this never stands alone
CLEAR_MARGIN = 8.0  # a fuzzy match this far ahead of the next one stands alone
SURE_SCORE = 80.0  # a clear fuzzy match this good is recorded without confirmation
MAX_FUZZY_CANDIDATES = 400
NEAR_MISS_RATIO = 88  # whole-key similarity (0-100) for a misspelt title
_MEMO_SIZE = 4096


@dataclass(frozen=True)
class TitleMatch:
    """One catalogue item a mention may mean."""

    item_id: str
    title: str
    score: float  # 100 the title as written, 99 its key, 98 its short key, below 97 fuzzy
    exact: bool


@dataclass(frozen=True)
class TitleResolution:
    """A mention resolved against the catalogue: its matches, best first."""

    text: str
    matches: tuple[TitleMatch, ...]

    @property
    def best(self) -> TitleMatch | None:
        """The one item the mention singles out; None when it matches nothing or several."""
        if not self.matches:
            return None
        top = self.matches[0]
        if len({m.title for m in self.matches if m.score == top.score}) > 1:
            return None  # different items tie (same-titled copies count as one: most popular)
        if top.exact:
            return top
        others = [m.score for m in self.matches if m.score < top.score]
        if top.score >= MIN_CLEAR_SCORE and (not others or top.score - others[0] >= CLEAR_MARGIN):
            return top
        return None

    @property
    def confident(self) -> TitleMatch | None:
        """The best match when it is sure enough to record without asking "did you mean ...?".

        An exact title, or a fuzzy one scoring ``SURE_SCORE`` or more (a typo, "Godfather 2");
        a partial mention ("pride" for "Celtic Pride") is a guess to confirm first.
        """
        best = self.best
        return best if best is not None and (best.exact or best.score >= SURE_SCORE) else None

    @property
    def exact(self) -> bool:
        """Whether some title has exactly this key (the mention is certainly a title)."""
        return bool(self.matches) and self.matches[0].exact


class TitleIndex:
    """Exact and fuzzy look-up of item titles (thread-safe; results memoised)."""

    def __init__(self, item_ids: Sequence[str], titles: Sequence[str], popularity: np.ndarray):
        self.item_ids = list(item_ids)
        self.titles = list(titles)
        self.popularity = popularity
        n = len(self.titles)
        self.full: dict[str, list[int]] = defaultdict(list)
        self.short: dict[str, list[int]] = defaultdict(list)
        self.verbatim: dict[str, list[int]] = defaultdict(list)
        self.years: list[int | None] = []  # the "(1995)" ending each title, if any
        tokens: list[tuple[str, ...]] = []
        postings: dict[str, list[int]] = defaultdict(list)
        for code, title in enumerate(self.titles):
            full, short, year = title_keys(title)
            self.verbatim[verbatim_key(title)].append(code)
            self.full[full].append(code)
            if short != full:
                self.short[short].append(code)
            self.years.append(year)
            tokens.append(tuple(dict.fromkeys(full.split())))
            for word in tokens[-1]:
                postings[word].append(code)
        self._item_tokens = tokens
        self._postings = {w: np.asarray(c, np.int64) for w, c in postings.items()}
        self._idf = {w: float(np.log((1 + n) / (1 + len(c)))) + 1.0 for w, c in postings.items()}
        self._max_idf = float(np.log(1 + n)) + 1.0
        self._common_df = max(3, int(0.1 * n))
        self._vocab = list(self._postings)
        self._keys_by_length: dict[int, list[str]] = defaultdict(list)
        for key in self.full:
            self._keys_by_length[len(key)].append(key)
        self._variants: dict[str, tuple[tuple[str, ...], np.ndarray, int]] = {}
        self._memo: dict[tuple[str, int], tuple[TitleMatch, ...]] = {}
        self._lock = threading.Lock()  # the memos are shared by concurrent chat turns

    def match(self, text: str, limit: int = MAX_MATCHES) -> tuple[TitleMatch, ...]:
        """Items whose title the text names: exact keys first, else fuzzy matches, best first."""
        memo_key = (text.strip().casefold(), limit)
        with self._lock:
            hit = self._memo.get(memo_key)
        if hit is not None:
            return hit
        matches = self._match(text, limit)
        with self._lock:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[memo_key] = matches
        return matches

    def resolve(self, texts: Iterable[str], limit: int = MAX_MATCHES) -> list[TitleResolution]:
        """Resolve each mention (a user's or LMMem's title text) to its catalogue matches."""
        return [TitleResolution(t, self.match(t, limit)) for t in texts]

    def _match(self, text: str, limit: int) -> tuple[TitleMatch, ...]:
        as_written = set(self.verbatim.get(verbatim_key(text), []))
        keys = query_keys(text)
        for key, year in keys:
            scored = {c: 100.0 if c in as_written else 99.0 for c in self.full.get(key, [])}
            for code in self.short.get(key, []):
                scored.setdefault(code, 98.0)
            if scored:
                return self._ranked(self._of_year(scored, year), limit, exact=True)
        if not keys:
            return ()
        key, year = keys[0]
        return self._ranked(self._of_year(self._fuzzy(key), year), limit, exact=False)

    def _of_year(self, scored: dict[int, float], year: int | None) -> dict[int, float]:
        if year is None:
            return scored
        return {c: s for c, s in scored.items() if self.years[c] == year} or scored

    def _ranked(
        self, scored: dict[int, float], limit: int, *, exact: bool
    ) -> tuple[TitleMatch, ...]:
        order = sorted(scored, key=lambda c: (-scored[c], -self.popularity[c], c))[:limit]
        return tuple(
            TitleMatch(self.item_ids[c], self.titles[c], round(float(scored[c]), 1), exact)
            for c in order
        )

    def _word(self, word: str) -> tuple[tuple[str, ...], np.ndarray, int]:
        """A mention word's title words (forms, typos), the items holding one, the rarest count."""
        found = self._variants.get(word)
        if found is None:
            variants = self._find_variants(word)
            codes = [self._postings[v] for v in variants]
            found = (
                variants,
                np.unique(np.concatenate(codes)) if codes else np.zeros(0, np.int64),
                min((len(c) for c in codes), default=0),
            )
            with self._lock:
                if len(self._variants) >= _MEMO_SIZE:
                    self._variants.clear()
                self._variants[word] = found
        return found

    def _find_variants(self, word: str) -> tuple[str, ...]:
        forms = word_forms(word) | {ROMAN.get(word, word), ARABIC.get(word, word)}
        found = {w for w in forms if w in self._postings}
        if not found and len(word) >= 5 and not word.isdigit():
            cutoff = 1 if len(word) < 8 else 2
            hits = process.extract(
                word, self._vocab, scorer=Levenshtein.distance, score_cutoff=cutoff, limit=5
            )
            found = {h[0] for h in hits if not h[0].isdigit()}
        return tuple(sorted(found))

    def _fuzzy(self, key: str) -> dict[int, float]:
        """Titles holding (nearly) every weighted word of the key, plus whole-key near misses."""
        words = list(dict.fromkeys(key.split()))
        weights = [self._idf.get(w, self._max_idf) for w in words]
        cover = np.zeros(len(self.titles))
        matched: set[str] = set()
        informative = False
        for word, weight in zip(words, weights, strict=True):
            variants, codes, rarest = self._word(word)
            if variants:
                cover[codes] += weight
                matched.update(variants)
                informative |= rarest <= self._common_df
        scored: dict[int, float] = {}
        if informative and sum(weights) > 0:
            scored = self._covering(cover / sum(weights), matched)
        numbers = {w for w in words if w.isdigit()}
        for near, ratio, _ in self._near_misses(key):
            if {w for w in near.split() if w.isdigit()} != numbers:
                continue  # "Godfather 2" is not a typo of "Godfather"
            for code in self.full[near]:
                scored[code] = max(scored.get(code, 0.0), min(FUZZY_CEILING, 0.95 * ratio))
        return scored

    def _near_misses(self, key: str) -> list[tuple[str, float, int]]:
        """Title keys within ``NEAR_MISS_RATIO`` of the key (only lengths that can reach it)."""
        if len(key) < 4:
            return []
        reach = NEAR_MISS_RATIO / (200 - NEAR_MISS_RATIO)  # shortest / longest that can match
        lengths = range(int(len(key) * reach), int(len(key) / reach) + 1)
        keys = [k for n in lengths for k in self._keys_by_length.get(n, ())]
        return process.extract(
            key, keys, scorer=fuzz.ratio, score_cutoff=NEAR_MISS_RATIO, limit=MAX_MATCHES
        )

    def _covering(self, share: np.ndarray, matched: set[str]) -> dict[int, float]:
        """Score titles covering the mention: its share of words, then the title's share."""
        candidates = np.flatnonzero(share >= MIN_FUZZY_COVER - 1e-9)
        if len(candidates) > MAX_FUZZY_CANDIDATES:
            rank = np.lexsort((-self.popularity[candidates], -share[candidates]))
            candidates = candidates[rank[:MAX_FUZZY_CANDIDATES]]
        scored: dict[int, float] = {}
        for code in candidates.tolist():
            title_words = self._item_tokens[code]
            title_weight = sum(self._idf[w] for w in title_words) or 1.0
            hit = sum(self._idf[w] for w in title_words if w in matched)
            scored[code] = min(
                FUZZY_CEILING, 100.0 * share[code] * (0.5 + 0.5 * hit / title_weight)
            )
        return scored
