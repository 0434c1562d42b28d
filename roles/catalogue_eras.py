"""The eras of a catalogue: a year (or a decade) per item where the catalogue has one.

Years come from "(1995)" ending a title, a "1995" or "1990s" attribute, or a "year: 1995" text
field. A catalogue where fewer than ``ERA_COVERAGE`` of the items are dated has no eras: era
wishes cannot filter it (the caller says so instead of returning only the few dated items).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from roles.catalogue_text import DECADE_ATTRIBUTE, TEXT_YEAR, YEAR_ATTRIBUTE

ERA_COVERAGE = 0.5  # share of dated items from which a catalogue "has eras"


class Eras:
    """Per-item year ranges (-1: undated) and what "90s", "older" and "newer" mean here."""

    def __init__(
        self,
        item_ids: Sequence[str],
        title_years: Sequence[int | None],
        attributes: Sequence[Sequence[str]],
        texts: Sequence[str],
    ) -> None:
        n = len(item_ids)
        self._code = {item: code for code, item in enumerate(item_ids)}
        self.lo = np.full(n, -1, np.int32)
        self.hi = np.full(n, -1, np.int32)
        for code in range(n):
            self.lo[code], self.hi[code] = _years(
                title_years[code],
                attributes[code] if code < len(attributes) else (),
                texts[code] if code < len(texts) else "",
            )
        dated = self.lo >= 0
        self.coverage = float(dated.mean()) if n else 0.0
        self.present = self.coverage >= ERA_COVERAGE
        self.decade_counts = Counter((self.lo[dated] // 10 * 10).tolist())
        middle = (self.lo[dated] + self.hi[dated]) / 2.0
        self.median_year = int(np.median(middle)) if dated.any() else None

    def decade(self, two_digits: int) -> int:
        """The decade "90s" means here: the century this catalogue has items in, else 19xx/20xx."""
        options = (1900 + two_digits, 2000 + two_digits)
        present = [d for d in options if self.decade_counts.get(d)]
        if len(present) == 1:
            return present[0]
        return options[0] if two_digits >= 30 else options[1]

    def relative(
        self, direction: Literal["older", "newer"], reference_ids: Iterable[str] = ()
    ) -> tuple[int | None, int | None]:
        """(year_min, year_max) "older" / "newer" than the references' median year.

        Without dated references the catalogue's median year is the pivot; (None, None) when the
        catalogue has no eras.
        """
        if not self.present or self.median_year is None:
            return None, None
        codes = [self._code[i] for i in reference_ids if i in self._code]
        middles = [(self.lo[c] + self.hi[c]) / 2.0 for c in codes if self.lo[c] >= 0]
        pivot = int(np.median(middles)) if middles else self.median_year
        return (None, pivot - 1) if direction == "older" else (pivot + 1, None)

    def mask(
        self, decades: Iterable[str], year_min: int | None, year_max: int | None
    ) -> np.ndarray | None:
        """Items in any of the decades and within the bounds; None when nothing can be applied."""
        starts = [int(d[:4]) for d in decades if DECADE_ATTRIBUTE.match(d)]
        if not self.present or not (starts or year_min is not None or year_max is not None):
            return None
        dated = self.lo >= 0
        inside = dated.copy()
        if starts:  # an item's year range overlaps one of the decades
            inside = np.zeros_like(dated)
            for start in starts:
                inside |= dated & (self.hi >= start) & (self.lo <= start + 9)
        if year_min is not None:
            inside &= self.hi >= year_min
        if year_max is not None:
            inside &= self.lo <= year_max
        return inside


def _years(title_year: int | None, attributes: Iterable[str], text: str) -> tuple[int, int]:
    year, decade = title_year, None
    for name in attributes:
        if year is None and YEAR_ATTRIBUTE.match(name):
            year = int(name)
        elif decade is None and DECADE_ATTRIBUTE.match(name):
            decade = int(name[:4])
    if year is None:
        found = TEXT_YEAR.search(text)
        year = int(found.group(1)) if found else None
    if year is not None:
        return year, year
    return (decade, decade + 9) if decade is not None else (-1, -1)
