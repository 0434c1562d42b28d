"""The words no cue consumed: eras, counts, "something else" and wanted attributes.

Eras: decades ("90s", "1990s", "the nineties"; a two-digit decade takes the century the
catalogue has items in), years with their prepositions ("from 1995", "before 1980", "since the
80s", "between 1990 and 1995"; a bare year only where the catalogue is dated, so "2020 aluminum
extrusion" stays a product) and relative eras ("older", "newer", "more recent"). Counts: a number
after a request verb ("give me 3", "top 10") or before a noun ("three sci-fi movies", "a couple
of comedies", "two more"). These words stay in the kept request text; they are only marked spent.
"""

from __future__ import annotations

from roles import lexicon as lx
from roles.utterance import DECADE, YEAR, Message, number_at

MAX_COUNT = 50
_ERA_LEAD = lx.BEFORE | lx.AFTER | lx.SINCE | lx.AT | lx.OLDER | lx.NEWER | {"than", "between"}


def runs(msg: Message) -> list[list[int]]:
    """Indices of the words no cue consumed, in runs no cut, comma or clause mark interrupts."""
    out: list[list[int]] = [[]]
    for k, token in enumerate(msg.tokens):
        if msg.cut[k] or token.norm in lx.CLAUSE_BREAK_MARKS or token.norm == ",":
            out.append([])
        elif token.word:
            out[-1].append(k)
    return [r for r in out if r]


def read_leftovers(msg: Message) -> None:
    """Eras first (their numbers are no counts), then counts, "else / more" and attributes."""
    for run in runs(msg):
        _eras(msg, run)
    ignore = lx.FUNCTION_WORDS | lx.GENERIC_NOUNS | lx.EVALUATIVE | {""}
    for run in runs(msg):
        _count(msg, run)
        _others(msg, run)
        words = [msg.tokens[k].norm if not msg.spent[k] else "" for k in run]
        found = msg.index.find_terms(words, ignore)
        msg.found.include += [n for _, _, n in found if n.lower() not in lx.NUMBER_WORDS]


def _eras(msg: Message, run: list[int]) -> None:
    words = [msg.tokens[k].norm for k in run]
    for j in range(len(words)):
        if msg.spent[run[j]]:
            continue
        before = [w for w in words[:j] if w != "the"]
        prev, prev2 = (before[-1] if before else ""), (before[-2] if len(before) > 1 else "")
        nxt = words[j + 1] if j + 1 < len(words) else ""
        if not _era_word(msg, run, words, j, (prev, prev2, nxt)):
            continue
        msg.spent[run[j]] = True
        for k in range(max(0, j - 3), j):  # "before", "older than", "since the": era words too
            if words[k] in _ERA_LEAD:
                msg.spent[run[k]] = True


def _era_word(
    msg: Message, run: list[int], words: list[str], j: int, around: tuple[str, str, str]
) -> bool:
    """Read the era word at ``j`` (decade, year, older / newer); False when it is none."""
    prev, prev2, nxt = around
    word = words[j]
    decade = _decade(msg, word)
    if decade is not None:
        _at_decade(msg, decade, prev, prev2)
    elif YEAR.match(word):
        taken = _at_year(msg, int(word), prev, prev2, words[j + 1 : j + 3])
        if not taken:
            return False
        for k in range(j + 1, j + taken):
            msg.spent[run[k]] = True
    elif word in lx.OLDER and nxt != "than":
        msg.found.relative = "older"
    elif word in lx.NEWER and nxt != "than":
        msg.found.relative = "newer"
        if prev in lx.MORE:  # "more recent" asks for nothing "more"
            msg.spent[run[j - 1]] = True
    elif word in lx.OLD and (nxt in lx.GENERIC_NOUNS or prev in {"something", "an", "some"}):
        msg.found.relative = "older"
    else:
        return False
    return True


def _decade(msg: Message, word: str) -> int | None:
    if word in lx.DECADE_WORDS:
        return msg.index.decade(lx.DECADE_WORDS[word])
    m = DECADE.match(word)
    if m is None:
        return None
    return int(m.group(1)) if m.group(1) else msg.index.decade(int(m.group(2)))


def _at_decade(msg: Message, decade: int, prev: str, prev2: str) -> None:
    found = msg.found
    if prev in lx.BEFORE or (prev == "than" and prev2 in lx.OLDER):
        found.year_max = decade - 1
    elif prev in lx.AFTER or (prev == "than" and prev2 in lx.NEWER):
        found.year_min = decade + 10
    elif prev in lx.SINCE:
        found.year_min = decade
    else:
        found.decades.append(f"{decade}s")


def _at_year(msg: Message, year: int, prev: str, prev2: str, nxt: list[str]) -> int:
    """Read a year and what surrounds it; returns how many words it took (0: not an era)."""
    found = msg.found
    later = [int(w) for w in nxt if YEAR.match(w)]
    if prev in lx.BEFORE or (prev == "than" and prev2 in lx.OLDER):
        found.year_max = year if prev in ("until", "till") else year - 1
    elif prev in lx.AFTER or (prev == "than" and prev2 in lx.NEWER):
        found.year_min = year + 1
    elif prev in lx.SINCE or (nxt[:1] and nxt[0] in lx.ONWARDS) or nxt[1:2] == ["later"]:
        found.year_min = year
    elif later and (YEAR.match(nxt[0]) or nxt[0] in ("to", "and", "until", "through")):
        found.year_min, found.year_max = year, later[0]
        return 2 if YEAR.match(nxt[0]) else 3
    elif prev in lx.AT or prev == "between" or msg.index.has_eras:
        found.year_min, found.year_max = year, year
    else:
        return 0  # a bare number in a catalogue without dates ("2020 aluminum extrusion")
    return 1


def _count(msg: Message, run: list[int]) -> None:
    words = [msg.tokens[k].norm for k in run]
    named = [(s, e) for s, e, _ in msg.index.find_terms(words) if e - s > 1]
    for j in range(len(words)):
        if msg.found.count is not None:
            return
        value, width = number_at(words, j)
        if msg.spent[run[j]] or value is None or not 1 <= value <= MAX_COUNT:
            continue
        if any(s <= j < e for s, e in named):  # "playstation 4" names a platform, not a count
            continue
        k = j - 1
        while k >= 0 and words[k] in lx.COUNT_SKIP:
            k -= 1
        asked = k >= 0 and words[k] in lx.COUNT_VERBS
        ahead = words[j + width : j + width + 4]
        counted = any(w in lx.COUNT_NOUNS or _plural_term(msg, w) for w in ahead)
        content = [w for w in words if w not in lx.FUNCTION_WORDS]
        alone = len(content) == width and not any(
            not msg.cut[i] and t.word and t.norm not in lx.FUNCTION_WORDS
            for i, t in enumerate(msg.tokens)
            if i not in run
        )
        if asked or counted or alone:
            msg.found.count = value
            for k in range(j, j + width):
                msg.spent[run[k]] = True


def _plural_term(msg: Message, word: str) -> bool:
    return word.endswith("s") and bool(msg.index.find_terms([word]))


def _others(msg: Message, run: list[int]) -> None:
    words = [msg.tokens[k].norm for k in run]
    for j, word in enumerate(words):
        nxt = words[j + 1] if j + 1 < len(words) else ""
        if not msg.spent[run[j]] and (word in lx.OTHER or (word in lx.MORE and nxt != "than")):
            msg.found.exclude_shown = True
            msg.spent[run[j]] = True
