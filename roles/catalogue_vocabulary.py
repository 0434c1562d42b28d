"""The attribute vocabulary of a catalogue: what users can ask for, mined from the items.

Terms are the declared attributes (genres / categories / tags columns, category path pieces,
platforms, brands) on at least ``MIN_TERM_ITEMS`` items, plus the informative words inside
attribute names and inside item text beyond the title (on ``MIN_WORD_ITEMS`` items or more and at
most ``MAX_WORD_SHARE`` of them). A word only ever found in one declared attribute ("noir" in
"Film-Noir") becomes another name of it; a word naming several ("tape" in "Duct Tape", "Electrical
Tape") becomes a term of its own covering all their items. Plural and singular forms both match.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from roles.catalogue_text import beyond_title, is_era, normalise, singular, word_forms
from roles.lexicon import NUMBER_WORDS

MIN_TERM_ITEMS = 2  # a declared attribute on fewer items is not offered as a constraint
MIN_WORD_ITEMS = 3  # a mined word on fewer items is not a vocabulary term
MAX_WORD_SHARE = 0.3  # a mined word on more than this share of items says nothing


@dataclass(frozen=True)
class Term:
    """A vocabulary term: a name users can ask for and the items it covers."""

    name: str
    items: np.ndarray  # sorted item codes
    declared: bool  # a dataset attribute (else a word mined from attribute names or item text)


@dataclass
class _Mined:
    """Declared attributes and words counted over the catalogue."""

    declared: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    words: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    surface: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    words_of: dict[str, list[str]] = field(default_factory=dict)  # attribute -> its words


def _mine(
    titles: Sequence[str], attributes: Sequence[Sequence[str]], texts: Sequence[str]
) -> _Mined:
    mined = _Mined()
    stem_of: dict[str, str | None] = {}  # word -> the key it counts under (None: too short)
    for code, title in enumerate(titles):
        item_words: set[str] = set()
        for name in attributes[code] if code < len(attributes) else ():
            if name not in mined.words_of:
                mined.words_of[name] = [] if is_era(name) else normalise(name).split()
            if mined.words_of[name]:
                mined.declared[name].add(code)
                item_words.update(mined.words_of[name])
        item_words.update(
            normalise(beyond_title(texts[code] if code < len(texts) else "", title)).split()
        )
        for word in item_words:
            if word not in stem_of:
                stem_of[word] = singular(word) if len(word) >= 3 and not word.isdigit() else None
            stem = stem_of[word]
            if stem is not None:
                mined.words[stem].add(code)
                mined.surface[stem][word] += 1
    return mined


class Vocabulary:
    """Terms with their items, and the aliases (normalised word tuples) that name them."""

    def __init__(
        self, titles: Sequence[str], attributes: Sequence[Sequence[str]], texts: Sequence[str]
    ) -> None:
        mined = _mine(titles, attributes, texts)
        self.terms: dict[str, Term] = {}
        self._aliases: dict[tuple[str, ...], str] = {}
        for name, codes in sorted(mined.declared.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            key = normalise(name)
            numeric = key in NUMBER_WORDS or key.isdigit()  # a count, never an attribute
            if len(codes) >= MIN_TERM_ITEMS and key and not numeric:
                self._add(name, codes, declared=True)
        self._add_words(mined, cap=MAX_WORD_SHARE * len(titles))
        self._longest = max((len(a) for a in self._aliases), default=1)

    def _add_words(self, mined: _Mined, cap: float) -> None:
        holders: dict[str, set[str]] = defaultdict(set)  # word -> declared terms naming it
        for name in self.terms:
            for word in mined.words_of.get(name, []):
                holders[word].add(name)
        for stem, codes in sorted(mined.words.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            if not MIN_WORD_ITEMS <= len(codes) <= cap or stem in NUMBER_WORDS or stem.isdigit():
                continue  # "two please" is a count, never an attribute
            owner = self._aliases.get((stem,))
            if owner is not None:  # a declared attribute of that name covers the word's items too
                term = self.terms[owner]
                merged = np.union1d(term.items, np.fromiter(codes, np.int64))
                self.terms[owner] = Term(term.name, merged, term.declared)
                continue
            names = set().union(*(holders.get(form, set()) for form in word_forms(stem)))
            if len(names) == 1 and codes <= set(self.terms[next(iter(names))].items.tolist()):
                for form in word_forms(stem):  # "noir" is only ever "Film-Noir": another name
                    self._aliases.setdefault((form,), next(iter(names)))
                continue
            surface = mined.surface[stem]
            self._add(stem if stem in surface else surface.most_common(1)[0][0], codes, False)

    def _add(self, name: str, codes: Collection[int], declared: bool) -> None:
        self.terms[name] = Term(name, np.asarray(sorted(codes), np.int64), declared)
        words = normalise(name).split()
        for form in word_forms(words[-1]):
            self._aliases.setdefault((*words[:-1], form), name)
        if len(words) == 2 and len(words[0]) + len(words[1]) <= 8:  # "sci fi" -> "scifi"
            self._aliases.setdefault((words[0] + words[1],), name)

    def find(
        self, words: Sequence[str], ignore: Collection[str] = ()
    ) -> list[tuple[int, int, str]]:
        """Terms named in normalised words, longest first: (start, end, term name) spans.

        A one-word span is never a word in ``ignore`` (the caller's function words).
        """
        out: list[tuple[int, int, str]] = []
        i = 0
        while i < len(words):
            shortest = 2 if words[i] in ignore else 1  # "film noir" yes, "film" alone no
            for length in range(min(self._longest, len(words) - i), shortest - 1, -1):
                name = self._aliases.get(tuple(words[i : i + length]))
                if name is not None:
                    out.append((i, i + length, name))
                    i += length
                    break
            else:
                i += 1
        return out

    def canonical(self, names: Iterable[str]) -> list[str]:
        """The terms named in free phrases (LMMem's attributes); unknown phrases dropped."""
        out: list[str] = []
        for name in names:
            out += [term for _, _, term in self.find(normalise(name).split())]
        return list(dict.fromkeys(out))

    def items_with(self, term: str) -> np.ndarray:
        """Item codes a term covers (empty for an unknown term)."""
        found = self.terms.get(term)
        return found.items if found is not None else np.zeros(0, np.int64)
