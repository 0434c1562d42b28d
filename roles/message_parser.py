"""The offline reading of a chat message: a deterministic parser over the catalog's vocabulary.

``parse_message`` turns one user message into an :class:`Understanding` (intent, request,
constraints, feedback mentions) without a model; ``CatalogVocabulary`` indexes a workspace's
titles (match keys, years) and attributes (with aliases) for it. ``clean_understanding`` keeps
only catalog attributes in a model's reading. Used by the ``understand`` node.
"""

from __future__ import annotations

import re
import unicodedata
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from memory_store.workspace import Workspace
from schemas.chat_state import Constraints, Intent, Mention, Sentiment, Understanding

MAX_MESSAGE_CHARS = 2000
MAX_PREFIX_MATCHES = 8
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_PARENS = re.compile(r"\([^)]*\)")
_TRAILING_ARTICLE = re.compile(r"^(.*),\s*(the|a|an|la|le|les|il|das|der|die|el)$")
_LEADING_ARTICLE = re.compile(r"^(the|a|an)\s+")
_CLAUSE_END = r"(?=\s*(?:[.;!?]|,|\bbut\b|\bso\b|$))"
_TITLE_SPAN = r"[\"'\u201c\u2018]?(?P<t>[^.;!?,]+?)[\"'\u201d\u2019]?"
_POSITIVE = re.compile(
    r"\b(?:loved|liked|enjoyed|adored|really liked|really loved)\s+" + _TITLE_SPAN + _CLAUSE_END,
    re.I,
)
_NEGATIVE = re.compile(
    r"\b(?:hated|disliked|didn'?t like|did not like|didn'?t enjoy|did not enjoy|"
    r"couldn'?t stand)\s+" + _TITLE_SPAN + _CLAUSE_END,
    re.I,
)
_NOT_THAT = re.compile(r"\b(?:not\s+(?:that|this)(?:\s+one)?|nope)\s*(?=[,.;!?]|$)", re.I)
_EXCLUDE = re.compile(
    r"\b(?:not in the mood for|no more|no|without|avoid|skip|nothing|don'?t want(?: any)?|"
    r"not)\s+(?P<x>[^.;!?,]+)",
    re.I,
)
_DECADE = re.compile(r"(?<![\w'])'?(?P<century>19|20)?(?P<d>\d)0'?s\b", re.I)
_FILLER = re.compile(r"\s+(?:a lot|so much|very much|too|as well|last night|yesterday)$", re.I)
_ENGLISH = frozenset(
    "i me my a an the and or but to for of in on with something some movie movies film films "
    "show give recommend want like liked loved what any please more less not no is was it "
    "that this mood watch tonight you can could would good great".split()
)
_FOREIGN = frozenset(
    "je tu il nous vous une des les est pas pour avec quelque chose voudrais film "
    "yo quiero una película peliculas algo para por favor como muy "
    "ich möchte ein eine einen der die das und nicht bitte etwas "
    "io vorrei un uno della per favore qualcosa "
    "eu quero um filme alguma coisa".split()
)
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "sci fi": ("scifi", "science fiction", "sf"),
    "children s": ("children", "childrens", "kids", "kid", "family"),
    "film noir": ("noir",),
    "comedy": ("comedies", "funny", "laugh"),
    "horror": ("scary", "horror movies", "slasher"),
    "romance": ("romantic", "romances", "love story"),
    "animation": ("animated", "cartoon", "cartoons"),
    "documentary": ("documentaries",),
    "thriller": ("thrillers", "suspense"),
    "mystery": ("mysteries", "whodunit"),
    "drama": ("dramas", "dramatic"),
    "musical": ("musicals",),
    "western": ("westerns", "cowboy"),
    "war": ("war movies", "war films"),
    "action": ("action movies", "action packed"),
    "fantasy": ("fantasies",),
}


def normalise(text: str) -> str:
    """Lower case, no accents, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def normalise_title(title: str) -> tuple[str, int | None]:
    """A title's match key (no year, no alternate titles, leading article dropped) and year."""
    year_match = _YEAR.search(title.strip())
    year = int(year_match.group(1)) if year_match else None
    base = _PARENS.sub(" ", title).strip()
    moved = _TRAILING_ARTICLE.match(base.lower())
    if moved:
        base = f"{moved.group(2)} {moved.group(1)}"
    key = normalise(base)
    return _LEADING_ARTICLE.sub("", key), year


@dataclass
class CatalogVocabulary:
    """Titles and attributes of one workspace, indexed for matching user text."""

    titles: dict[str, list[int]] = field(default_factory=dict)  # match key -> item codes
    years: list[int | None] = field(default_factory=list)  # per item code
    aliases: dict[str, str] = field(default_factory=dict)  # normalised alias -> attribute
    decades: set[str] = field(default_factory=set)  # attributes like '1990s'

    @classmethod
    def build(cls, titles: Sequence[str], attributes: Iterable[str]) -> CatalogVocabulary:
        """Index the titles by match key and the attributes by their aliases."""
        vocab = cls()
        for code, title in enumerate(titles):
            key, year = normalise_title(title)
            vocab.titles.setdefault(key, []).append(code)
            vocab.years.append(year)
        for name in attributes:
            if re.fullmatch(r"\d{4}s", name):
                vocab.decades.add(name)
                continue
            key = normalise(name)
            if not key:
                continue
            for alias in (key, key + "s", *_SYNONYMS.get(key, ())):
                vocab.aliases.setdefault(alias, name)
        return vocab

    def match_title(self, text: str) -> list[int]:
        """Item codes whose title matches ``text`` (exact key first, then word prefix)."""
        key, year = normalise_title(text)
        if not key:
            return []
        year = year or _trailing_year(text)
        if year is not None and key.endswith(str(year)):
            key = key[: -len(str(year))].strip()
        codes = list(self.titles.get(key, []))
        if not codes and len(key) >= 4:
            codes = [c for k, cs in self.titles.items() if k.startswith(key + " ") for c in cs]
            codes = codes[: MAX_PREFIX_MATCHES + 1] if len(codes) > MAX_PREFIX_MATCHES else codes
        if year is not None:
            codes = [c for c in codes if self.years[c] == year] or codes
        return sorted(codes)

    def attributes_in(self, text: str) -> list[str]:
        """Catalog attributes named in ``text`` (by alias, whole words), in order of mention."""
        norm = f" {normalise(text)} "
        found: list[tuple[int, str]] = []
        for alias, name in self.aliases.items():
            pos = norm.find(f" {alias} ")
            if pos >= 0:
                found.append((pos, name))
        return list(dict.fromkeys(name for _, name in sorted(found)))

    def decades_in(self, text: str) -> list[str]:
        """Decades named in ``text`` ('90s', '1990s', "'80s"), as '1990s' strings."""
        out = []
        for m in _DECADE.finditer(text):
            digit = m.group("d")
            if m.group("century"):
                out.append(f"{m.group('century')}{digit}0s")
                continue
            nineteen = f"19{digit}0s"
            out.append(nineteen if nineteen in self.decades or digit >= "3" else f"20{digit}0s")
        return list(dict.fromkeys(out))


def _trailing_year(text: str) -> int | None:
    m = re.search(r"\b(19\d{2}|20\d{2})\s*$", text.strip())
    return int(m.group(1)) if m else None


_VOCABS: weakref.WeakKeyDictionary[Workspace, CatalogVocabulary] = weakref.WeakKeyDictionary()


def vocabulary(ws: Workspace) -> CatalogVocabulary:
    """The (cached) catalog vocabulary of a workspace."""
    vocab = _VOCABS.get(ws)
    if vocab is None:
        vocab = _VOCABS[ws] = CatalogVocabulary.build(
            ws.dataset.item_titles, ws.graph.attribute_names
        )
    return vocab


def looks_foreign(text: str) -> bool:
    """Whether a message is mostly another language (non-Latin script or foreign stop words)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    if latin / len(letters) < 0.5:
        return True
    words = re.findall(r"[^\W\d_]+", text.lower())
    english = sum(w in _ENGLISH for w in words)
    foreign = sum(w in _FOREIGN for w in words)
    return foreign >= 2 and foreign > english


def _clean_span(span: str) -> str:
    return _FILLER.sub("", span.strip().strip("\"'\u201c\u201d\u2018\u2019")).strip()


def parse_message(text: str, vocab: CatalogVocabulary) -> Understanding:
    """The deterministic reading of one message (the offline role of ``understand``)."""
    text = (text or "").strip()[:MAX_MESSAGE_CHARS]
    if not text or not re.search(r"\w", text):
        return Understanding(intent="empty")
    feedback: list[Mention] = []
    spans: list[tuple[int, int]] = []
    readings: tuple[tuple[re.Pattern[str], Sentiment], ...] = (
        (_POSITIVE, "positive"),
        (_NEGATIVE, "negative"),
    )
    for pattern, sentiment in readings:
        for m in pattern.finditer(text):
            feedback.append(Mention(text=_clean_span(m.group("t")), sentiment=sentiment))
            spans.append(m.span())
    for m in _NOT_THAT.finditer(text):
        feedback.append(Mention(text="that", sentiment="negative"))
        spans.append(m.span())
    rest = _cut(text, spans)
    exclude: list[str] = []
    for m in _EXCLUDE.finditer(rest):
        exclude += vocab.attributes_in(m.group("x"))
    include = [
        a for a in vocab.attributes_in(_cut(rest, _spans(_EXCLUDE, rest))) if a not in exclude
    ]
    constraints = Constraints(include=include, exclude=exclude, decades=vocab.decades_in(rest))
    request = rest.strip(" ,.;!?") or None
    if request is not None and not re.search(r"[^\W\d_]{2,}", request):
        request = None
    if looks_foreign(text) and not feedback:
        return Understanding(intent="other_language", constraints=constraints)
    intent: Intent = (
        "feedback" if feedback and not request and constraints.is_empty() else "recommend"
    )
    return Understanding(intent=intent, request=request, constraints=constraints, feedback=feedback)


def _spans(pattern: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [m.span() for m in pattern.finditer(text)]


def _cut(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the given spans."""
    out, pos = [], 0
    for start, end in sorted(spans):
        out.append(text[pos:start])
        pos = max(pos, end)
    out.append(text[pos:])
    return " ".join(" ".join(out).split())


def clean_understanding(raw: Understanding, vocab: CatalogVocabulary) -> Understanding:
    """Keep only catalog attributes and well-formed decades in a model's reading."""

    def known(names: Iterable[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            out += vocab.attributes_in(name)
        return list(dict.fromkeys(out))

    decades = [d for d in raw.constraints.decades if re.fullmatch(r"\d{4}s", d)]
    exclude = known(raw.constraints.exclude)
    constraints = Constraints(
        include=[a for a in known(raw.constraints.include) if a not in exclude],
        exclude=exclude,
        decades=decades or vocab.decades_in(" ".join(raw.constraints.decades)),
    )
    feedback = [m for m in raw.feedback if m.text.strip()]
    return raw.model_copy(update={"constraints": constraints, "feedback": feedback})
