"""Text keys of a catalogue: normalised words, word forms and title keys (no domain words)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

LEADING_ARTICLES = frozenset({"the", "a", "an"})
TITLE_YEAR = re.compile(r"\((1[89]\d\d|20\d\d)\)\s*$")
DECADE_ATTRIBUTE = re.compile(r"^(1[89]\d0|20\d0)s$")
YEAR_ATTRIBUTE = re.compile(r"^(1[89]\d\d|20\d\d)$")
TEXT_YEAR = re.compile(r"\b(?:year|released|release date)\s*:\s*(1[89]\d\d|20\d\d)\b", re.I)
ROMAN = {str(n): r for n, r in enumerate("i ii iii iv v vi vii viii ix x".split(), start=1)}
ARABIC = {r: n for n, r in ROMAN.items()}

_TRAILING_ARTICLE = re.compile(
    r"^(.*?),\s*(the|a|an|la|le|les|il|das|der|die|el|los|las)\s*$", re.IGNORECASE
)
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_TRAILING_YEAR = re.compile(r"^(?P<key>.*\S)\s+(?P<year>1[89]\d\d|20\d\d)$")
_LEADING_YEAR = re.compile(r"^(?P<year>1[89]\d\d|20\d\d)\s+(?:the\s+)?(?P<key>\S.*)$")
_SHORT_TITLE = re.compile(r"\s[-\u2013\u2014]\s")
_APOSTROPHES = re.compile(r"['\u2019`\u00b4]")
_NON_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Case-folded words, no accents or punctuation ("Children's Sci-Fi" -> "childrens sci fi")."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    text = _APOSTROPHES.sub("", text.casefold()).replace("&", " and ")
    return " ".join(_NON_WORD.sub(" ", text).split())


def word_forms(word: str) -> set[str]:
    """The word with its plural or singular form (English endings), for matching either."""
    forms = {word}
    if len(word) < 3 or not word.isalpha():
        return forms
    if word.endswith("ies") and len(word) > 4:
        forms.add(word[:-3] + "y")
    elif word.endswith(("ses", "xes", "ches", "shes")):
        forms.add(word[:-2])
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        forms.add(word[:-1])
    elif word.endswith("y") and word[-2:-1] not in "aeiou":
        forms.add(word[:-1] + "ies")
    elif word.endswith(("s", "x", "ch", "sh")):
        forms.add(word + "es")
    else:
        forms.add(word + "s")
    return forms


@lru_cache(maxsize=65536)
def singular(word: str) -> str:
    """The shortest of a word's forms (the key mined words are merged under)."""
    return min(word_forms(word), key=lambda w: (len(w), w))


def _key(text: str) -> str:
    text = text.strip()
    moved = _TRAILING_ARTICLE.match(text)
    if moved:
        text = f"{moved.group(2)} {moved.group(1)}"
    words = normalise(text).split()
    if len(words) > 1 and words[0] in LEADING_ARTICLES:
        words = words[1:]
    return " ".join(words)


def title_keys(title: str) -> tuple[str, str, int | None]:
    """A title's full key, short key (before " - ") and the year in "(1995)" at its end."""
    year_match = TITLE_YEAR.search(title)
    base = _BRACKETS.sub(" ", title)
    short = _SHORT_TITLE.split(base, maxsplit=1)[0]
    return _key(base), _key(short), int(year_match.group(1)) if year_match else None


def verbatim_key(title: str) -> str:
    """The title as written (normalised, its "(1995)" year dropped)."""
    return normalise(TITLE_YEAR.sub("", title))


def query_keys(text: str) -> list[tuple[str, int | None]]:
    """The keys a mention may stand for: as written, and without its year ("Heat 1995")."""
    full, _, year = title_keys(text)
    keys: list[tuple[str, int | None]] = [(full, year)] if full else []
    trailing = _TRAILING_YEAR.match(full) or _LEADING_YEAR.match(full)  # "Heat 1995", "1995 Heat"
    if year is None and trailing:
        keys.append((trailing.group("key"), int(trailing.group("year"))))
    return keys


def is_era(attribute: str) -> bool:
    """Whether a declared attribute is a date ("1990s", "1995") rather than a property."""
    return bool(DECADE_ATTRIBUTE.match(attribute) or YEAR_ATTRIBUTE.match(attribute))


def beyond_title(text: str, title: str) -> str:
    """The item text after its title (descriptions, category paths, column values)."""
    text = text.strip()
    return text[len(title) :] if title and text.startswith(title) else text
