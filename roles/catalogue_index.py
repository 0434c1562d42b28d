"""A dataset's own catalogue, indexed for reading what people write about it.

Built from the project's :class:`~memory_store.datasets.Dataset` alone, so it works on any dataset:

- **titles** (:mod:`roles.catalogue_titles`): normalised keys for exact look-up (year, bracketed
  notes and articles dropped; the part before " - " of product-style titles) and an IDF-weighted
  word index for partial or misspelt mentions;
- **attribute vocabulary** (:mod:`roles.catalogue_vocabulary`): the declared attributes (genres /
  categories / tags, category path pieces, platforms, brands) and informative words mined from
  attribute names and item text, each with the items it covers;
- **eras** (:mod:`roles.catalogue_eras`): a year or decade per item where the catalogue has them.

:meth:`CatalogueIndex.resolve_titles` is the one title resolver: the offline parser uses it to find
title spans, and with LLM roles the titles LMMem extracts are resolved through it afterwards.
Indexes are cached per catalogue content (:func:`catalogue_index`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from typing import Literal

import numpy as np

from dataio.dataset import Dataset
from dataio.split import split_leave_one_out
from roles.catalogue_eras import Eras
from roles.catalogue_text import normalise, title_keys, word_forms
from roles.catalogue_titles import MAX_MATCHES, TitleIndex, TitleMatch, TitleResolution
from roles.catalogue_vocabulary import Term, Vocabulary

__all__ = [
    "CatalogueIndex",
    "Term",
    "TitleMatch",
    "TitleResolution",
    "catalogue_index",
    "normalise",
    "resolve_titles",
    "title_keys",
    "word_forms",
]

logger = logging.getLogger(__name__)

CACHE_SIZE = 4  # indexes kept per process (one per dataset in use)


class CatalogueIndex:
    """Titles, attribute vocabulary and eras of one dataset (see the module docstring)."""

    def __init__(self, dataset: Dataset) -> None:
        started = time.perf_counter()
        self.name = dataset.name
        self.item_ids = list(dataset.item_ids)
        self.titles = list(dataset.item_titles)
        self.n_items = len(self.item_ids)
        attributes = dataset.item_attributes or [[] for _ in self.item_ids]
        # ties between title matches go to the popular item, counted on the train split only
        # (nothing online reads a held-out interaction)
        train = split_leave_one_out(dataset).train["item"].to_numpy()
        popularity = np.bincount(train, minlength=self.n_items).astype(np.float64)
        self._titles = TitleIndex(self.item_ids, self.titles, popularity)
        self.vocabulary = Vocabulary(self.titles, attributes, dataset.item_texts)
        self.eras = Eras(self.item_ids, self._titles.years, attributes, dataset.item_texts)
        self.build_seconds = time.perf_counter() - started
        logger.info(
            "catalogue index of %s: %d titles, %d terms, eras %s, built in %.2f s",
            self.name,
            self.n_items,
            len(self.terms),
            "yes" if self.has_eras else "no",
            self.build_seconds,
        )

    # ------------------------------------------------------------------------------ titles

    def match_title(self, text: str, limit: int = MAX_MATCHES) -> tuple[TitleMatch, ...]:
        """Items whose title the text names: exact keys first, else fuzzy matches, best first."""
        return self._titles.match(text, limit)

    def resolve_titles(
        self, texts: Iterable[str], limit: int = MAX_MATCHES
    ) -> list[TitleResolution]:
        """Resolve each mention (a user's or LMMem's title text) to its catalogue matches."""
        return self._titles.resolve(texts, limit)

    # ------------------------------------------------------------------------- vocabulary

    @property
    def terms(self) -> dict[str, Term]:
        """Every vocabulary term by name."""
        return self.vocabulary.terms

    def find_terms(
        self, words: Sequence[str], ignore: Collection[str] = ()
    ) -> list[tuple[int, int, str]]:
        """Terms named in normalised words: (start, end, term name), longest match first."""
        return self.vocabulary.find(words, ignore)

    def canonical_terms(self, names: Iterable[str]) -> list[str]:
        """The vocabulary terms named in free phrases (LMMem's attributes); unknown ones dropped."""
        return self.vocabulary.canonical(names)

    def items_with(self, term: str) -> np.ndarray:
        """Item codes a vocabulary term covers (empty for an unknown term)."""
        return self.vocabulary.items_with(term)

    # ------------------------------------------------------------------------------- eras

    @property
    def has_eras(self) -> bool:
        """Whether most items are dated, so era wishes can filter this catalogue."""
        return self.eras.present

    @property
    def median_year(self) -> int | None:
        """The median year of the dated items (None: nothing is dated)."""
        return self.eras.median_year

    def decade(self, two_digits: int) -> int:
        """The decade "90s" means in this catalogue (1990, or 2020 for "20s" where it is newer)."""
        return self.eras.decade(two_digits)

    def relative_years(
        self, direction: Literal["older", "newer"], reference_ids: Iterable[str] = ()
    ) -> tuple[int | None, int | None]:
        """(year_min, year_max) for "older" / "newer" than the reference items (picks shown)."""
        return self.eras.relative(direction, reference_ids)

    # ---------------------------------------------------------------------------- filters

    def allowed(
        self,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        decades: Iterable[str] = (),
        year_min: int | None = None,
        year_max: int | None = None,
    ) -> np.ndarray:
        """Boolean mask of items with any included term, no excluded term, within the era.

        Era bounds apply only where the catalogue has eras (``has_eras``); undated items then fail.
        """
        mask = np.ones(self.n_items, bool)
        include = list(include)
        if include:
            wanted = np.zeros(self.n_items, bool)
            for term in include:
                wanted[self.items_with(term)] = True
            mask &= wanted
        for term in exclude:
            mask[self.items_with(term)] = False
        in_era = self.eras.mask(decades, year_min, year_max)
        return mask if in_era is None else mask & in_era


# ------------------------------------------------------------------------------- the cache

_CACHE: OrderedDict[str, CatalogueIndex] = OrderedDict()
_BY_OBJECT: dict[int, tuple[weakref.ref[Dataset], str]] = {}
_CACHE_LOCK = threading.Lock()


def fingerprint(dataset: Dataset) -> str:
    """A digest of the catalogue (ids, titles, texts, attributes): equal catalogues share one."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(dataset.name.encode())
    for item_id, title, text in zip(
        dataset.item_ids, dataset.item_titles, dataset.item_texts, strict=False
    ):
        digest.update(f"{item_id}\x1f{title}\x1f{text}\x1e".encode())
    for item_attributes in dataset.item_attributes:
        digest.update("\x1f".join(item_attributes).encode() + b"\x1e")
    return digest.hexdigest()


def _fingerprint_of(dataset: Dataset) -> str:
    """The dataset object's fingerprint, computed once per object (held weakly)."""
    with _CACHE_LOCK:
        known = _BY_OBJECT.get(id(dataset))
        if known is not None and known[0]() is dataset:
            return known[1]
    digest = fingerprint(dataset)
    with _CACHE_LOCK:
        _BY_OBJECT[id(dataset)] = (weakref.ref(dataset), digest)
        weakref.finalize(dataset, _BY_OBJECT.pop, id(dataset), None)
    return digest


def catalogue_index(dataset: Dataset) -> CatalogueIndex:
    """The dataset's index, built on first use and cached by catalogue content.

    A loaded catalogue is treated as immutable (a workspace's catalog snapshot). Popularity, the
    tie-break between equal title matches, is taken when the index is built.
    """
    key = _fingerprint_of(dataset)
    with _CACHE_LOCK:
        found = _CACHE.get(key)
        if found is not None:
            _CACHE.move_to_end(key)
            return found
    built = CatalogueIndex(dataset)
    with _CACHE_LOCK:
        _CACHE[key] = built
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return built


def resolve_titles(
    dataset: Dataset, texts: Iterable[str], limit: int = MAX_MATCHES
) -> list[TitleResolution]:
    """Resolve title mentions (the parser's or LMMem's) against the dataset's catalogue."""
    return catalogue_index(dataset).resolve_titles(texts, limit)
