"""Domain words for the prompts: a model reads "watch history" for movies, "purchases" for products.

Picked from the dataset's name (a known dataset, an InstructRec domain, or a generic folder's
name); anything unrecognised gets neutral words ("items", "interaction history").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class DomainWords:
    """How the prompts name the catalogue's things and a user's past with them."""

    item: str  # one thing: "movie"
    items: str  # several: "movies"
    history: str  # the user's past with them: "watch history"
    interacted: str  # the past verb: "watched"


MOVIES = DomainWords("movie", "movies", "watch history", "watched")
BOOKS = DomainWords("book", "books", "reading history", "read")
GAMES = DomainWords("game", "video games", "purchase history", "bought")
PRODUCTS = DomainWords("product", "products", "purchase history", "bought")
PLACES = DomainWords("business", "businesses", "visit history", "visited")
ITEMS = DomainWords("item", "items", "interaction history", "interacted with")

# First matching keyword of the dataset's name wins.
_KEYWORDS: tuple[tuple[tuple[str, ...], DomainWords], ...] = (
    (("ml-", "movielens", "movie", "film", "netflix"), MOVIES),
    (("book", "goodreads"), BOOKS),
    (("game",), GAMES),
    (("yelp", "restaurant", "business"), PLACES),
    (("amazon", "scientific", "product", "beauty", "sports", "toys"), PRODUCTS),
)


def domain_words(dataset: str) -> DomainWords:
    """The words for ``dataset`` (a name or a folder path); neutral words when unknown."""
    name = PurePath(dataset).name.lower() if dataset else ""
    for keywords, words in _KEYWORDS:
        if any(k in name for k in keywords):
            return words
    return ITEMS
