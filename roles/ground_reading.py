"""A model's reading kept to what the catalogue knows (the LLM path of understand).

With LLM roles, understand is one structured LMMem call filling
:class:`~schemas.chat_state.Understanding`;
this keeps its constraints to the catalogue's own vocabulary and eras and its references to the
parser's forms ("that", "#2", "these"). Its titles stay as written: the chat resolves them with
:meth:`~roles.catalogue_index.CatalogueIndex.resolve_titles`, as it does the parser's.
"""

from __future__ import annotations

import re

from roles.catalogue_index import CatalogueIndex, normalise
from roles.utterance import reference
from schemas.chat_state import Constraints, Understanding

_DECADE = re.compile(r"^(?:(1[89]\d0|20\d0)|'?(\d0))s$")
_YEARS = range(1800, 2101)


def _decades(values: list[str], index: CatalogueIndex) -> list[str]:
    out = []
    for value in values:
        m = _DECADE.match(value.strip().lower())
        if m is not None:
            out.append(f"{m.group(1) or index.decade(int(m.group(2)))}s")
    return list(dict.fromkeys(out))


def _mentions(texts: list[str]) -> list[str]:
    """Non-empty texts, references in the parser's forms ("the second one" -> "#2")."""
    out = []
    for text in texts:
        words = normalise(text).split()
        if words:
            out.append(reference(words) or text.strip())
    return list(dict.fromkeys(out))


def ground_reading(raw: Understanding, index: CatalogueIndex) -> Understanding:
    """The reading with catalogue terms only, valid decades and years, tidy references."""
    c = raw.constraints
    exclude = index.canonical_terms(c.exclude)
    year_min = c.year_min if c.year_min in _YEARS else None
    year_max = c.year_max if c.year_max in _YEARS else None
    if year_min is not None and year_max is not None and year_min > year_max:
        year_min, year_max = year_max, year_min
    constraints = Constraints(
        include=[t for t in index.canonical_terms(c.include) if t not in exclude],
        exclude=exclude,
        decades=_decades(c.decades, index),
        year_min=year_min,
        year_max=year_max,
        relative_era=c.relative_era,
    )
    feedback = [
        m.model_copy(update={"text": _mentions([m.text])[0]})
        for m in raw.feedback
        if m.text.strip()
    ]
    return raw.model_copy(
        update={
            "constraints": constraints,
            "feedback": feedback,
            "skip": _mentions(raw.skip),
            "similar_to": _mentions(raw.similar_to),
            "request": (raw.request or "").strip() or None,
        }
    )
