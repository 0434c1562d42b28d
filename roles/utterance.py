"""One chat message as the offline parser reads it: tokens, what is consumed, what was found.

The parser's stages (:mod:`roles.offline_understand` for cues, :mod:`roles.utterance_pieces` for
titles and attributes in a cue's reach, :mod:`roles.utterance_leftovers` for eras, counts and
wishes) share one :class:`Message` and add what they read to its :class:`Found`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from roles import lexicon as lx
from roles.catalogue_index import CatalogueIndex, normalise
from schemas.chat_state import Mention

_TOKEN = re.compile(
    r"(?P<ref>#\d{1,2}\b)"  # "#2": the second pick shown
    r"|(?P<num>\d+(?:[.,]\d+)+)"  # "1.75", "1,000": one word, not a clause break
    r"|(?P<w>[^\W_]+(?:['\u2019][^\W_]+)*)"  # words, apostrophes inside kept ("didn't")
    r"|(?P<p>[^\w\s\"'\u201c\u201d\u2018\u2019`])"  # marks; quote characters are dropped
)
DECADE = re.compile(r"^(?:(1[89]\d0|20\d0)|(\d0))s$")
YEAR = re.compile(r"^(1[89]\d\d|20\d\d)$")
_ORDINAL_REF = re.compile(r"^#(\d{1,2})$")
NOT_CONTENT = lx.FUNCTION_WORDS | lx.GENERIC_NOUNS | lx.EVALUATIVE | lx.OLDER | lx.NEWER | lx.OTHER


@dataclass(frozen=True)
class Token:
    """A word or a mark of the message, with its place in the text."""

    text: str
    norm: str
    start: int
    end: int
    word: bool


def tokenize(text: str) -> list[Token]:
    """Words (normalised as the catalogue index normalises) and marks ("&" reads as "and")."""
    out = []
    for m in _TOKEN.finditer(text):
        raw = m.group()
        if m.lastgroup in ("ref", "num"):
            out.append(Token(raw, raw, m.start(), m.end(), True))
        elif m.lastgroup == "w":
            out.append(Token(raw, normalise(raw), m.start(), m.end(), True))
        else:
            out.append(Token(raw, "and" if raw == "&" else raw, m.start(), m.end(), raw == "&"))
    return out


@dataclass(frozen=True)
class Piece:
    """A stretch of a cue's reach read as a title, a reference to a shown pick, or attributes."""

    kind: Literal["title", "ref", "attr"]
    text: str  # the title as written, or the reference ("that", "#2", "these")
    terms: tuple[str, ...]  # vocabulary terms (attributes)
    quality: int  # 3 exact title / reference / one attribute, 2 clear fuzzy, 1 ambiguous, 0 unknown
    words: int


@dataclass
class Found:
    """What the stages read so far."""

    feedback: list[Mention] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    similar: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    decades: list[str] = field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    relative: Literal["older", "newer"] | None = None
    count: int | None = None
    exclude_shown: bool = False


@dataclass
class Message:
    """A message's tokens, which of them are consumed, and what was found in them."""

    text: str
    index: CatalogueIndex
    tokens: list[Token] = field(init=False)
    cut: list[bool] = field(init=False)  # consumed by a cue: out of the kept request text
    spent: list[bool] = field(init=False)  # read as an era, a count or "else" (kept in the text)
    found: Found = field(default_factory=Found)

    def __post_init__(self) -> None:
        self.tokens = tokenize(self.text)
        self.cut = [False] * len(self.tokens)
        self.spent = [False] * len(self.tokens)

    def breaks(self, k: int) -> bool:
        """Whether token ``k`` ends a clause (". ! ? ;", "but", "so", ...)."""
        token = self.tokens[k]
        if token.norm in lx.CLAUSE_BREAK_MARKS:
            return True
        return token.word and token.norm in lx.CLAUSE_BREAK_WORDS

    def separates(self, k: int) -> bool:
        """Whether token ``k`` separates list items (",", "and", "or", "&", "/")."""
        token = self.tokens[k]
        return token.norm in lx.SEPARATOR_MARKS or (token.word and token.norm in lx.SEPARATOR_WORDS)

    def consume(self, start: int, stop: int) -> None:
        """Cut tokens ``start:stop`` from the request text."""
        for k in range(start, stop):
            self.cut[k] = True


def is_content(token: Token) -> bool:
    """Whether a word carries the request (not a function, era, count or generic word)."""
    word = token.norm
    if not token.word or word in NOT_CONTENT or word in lx.NUMBER_WORDS or word.isdigit():
        return False
    return not (DECADE.match(word) or word in lx.DECADE_WORDS or word in lx.OLD)


def is_junk(token: Token) -> bool:
    """A mark or a connective that must not start or end the kept request text."""
    return not token.word or token.norm in lx.LEADING_JUNK


def looks_like_a_name(words: list[Token]) -> bool:
    """A capitalised run of up to eight words with no cue or request word inside."""
    if not words or len(words) > 8 or words[-1].norm in lx.FUNCTION_WORDS:
        return False
    if not (words[0].text[:1].isupper() or words[0].text[:1].isdigit()):
        return False
    blocked = lx.FUNCTION_WORDS - lx.TITLE_CONNECTORS
    return not any(
        t.norm in blocked or (t.norm in lx.GENERIC_NOUNS and not t.text[:1].isupper())
        for t in words
    )


def reference(norms: list[str]) -> str | None:
    """A reference to shown picks: "that" (the top one), "#2" (the second), "these" (all)."""
    words = norms[1:] if norms[:1] == ["the"] else norms
    if tuple(words) in lx.REFERENCE_LAST:
        return "that"
    if tuple(words) in lx.REFERENCE_ALL:
        return "these"
    if not words:
        return None
    rest = set(words[1:])
    if words[0] in lx.ORDINALS and rest <= {"one", "pick", "option", "item"} | lx.GENERIC_NOUNS:
        return f"#{lx.ORDINALS[words[0]]}"
    if words[0] == "number" and len(words) == 2 and words[1].isdigit():
        return f"#{int(words[1])}"
    m = _ORDINAL_REF.match(words[0])
    return f"#{int(m.group(1))}" if m and len(words) == 1 else None


def number_at(words: list[str], j: int) -> tuple[int | None, int]:
    """The count that starts at word ``j`` and how many words it takes ("a couple" = 2, 2)."""
    for phrase, value in lx.QUANTITY_PHRASES.items():
        if tuple(words[j : j + len(phrase)]) == phrase:
            return value, len(phrase)
    word = words[j]
    if word in lx.NUMBER_WORDS:
        return lx.NUMBER_WORDS[word], 1
    return (int(word), 1) if word.isdigit() and len(word) <= 2 else (None, 1)


def looks_foreign(text: str) -> bool:
    """Mostly another script, or more foreign than English function words."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    if latin / len(letters) < 0.5:
        return True
    words = normalise(text).split()
    foreign = sum(w in lx.FOREIGN_FUNCTION_WORDS for w in words)
    english = sum(w in lx.FUNCTION_WORDS for w in words)
    return foreign >= 2 and foreign > english
