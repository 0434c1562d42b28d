"""The catalogue-driven offline reading of chat messages: utterance tables and the index beneath.

Two fast tables run on tiny catalogues built here (a film catalogue with years and genres, a
product catalogue with category paths, brands and no dates); three slow tables run on the
benchmark datasets. Each row pins the whole reading: every field the parser filled, with the
titles it named resolved through the catalogue index (``Title (N matches)`` when ambiguous,
``Title (no match)`` when the catalogue lacks it), and nothing else.
"""

# ruff: noqa: E501  (utterance tables: one row per line reads best)

from __future__ import annotations

import functools
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dataio.dataset import Dataset
from dataio.datasets import load_dataset
from roles.catalogue_index import (
    CatalogueIndex,
    catalogue_index,
    normalise,
    resolve_titles,
    title_keys,
    word_forms,
)
from roles.ground_reading import ground_reading
from roles.offline_understand import read_offline
from roles.utterance import tokenize
from schemas.chat_state import Constraints, Understanding

DATA_DIR = Path(
    os.environ.get("MEMREC_DATA_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
REFERENCES = re.compile(r"^(that|these|#\d+)$")


def make_dataset(name: str, items: list[tuple[str, str, list[str]]], texts: bool) -> Dataset:
    """A catalogue of (id, title, attributes) with one interaction per item, more for the first."""
    ids = [i for i, _, _ in items]
    rows = [(0, code, code) for code in range(len(ids))] + [(1, 0, 0), (2, 0, 0)]
    frame = pd.DataFrame(rows, columns=["user", "item", "ts"]).assign(rating=np.nan)
    return Dataset(
        name=name,
        interactions=frame,
        user_ids=["u0", "u1", "u2"],
        item_ids=ids,
        item_titles=[t for _, t, _ in items],
        item_texts=[f"{t}. {' > '.join(a)}." if texts else f"{t}." for _, t, a in items],
        item_attributes=[a for _, _, a in items],
    )


FILMS = [
    ("1", "Star Wars (1977)", ["Action", "Sci-Fi"]),
    ("2", "Alien (1979)", ["Horror", "Sci-Fi"]),
    ("3", "Aliens (1986)", ["Action", "Sci-Fi"]),
    ("4", "Heat (1995)", ["Action", "Crime"]),
    ("5", "Heathers (1989)", ["Comedy"]),
    ("6", "Godfather, The (1972)", ["Crime", "Drama"]),
    ("7", "Godfather: Part II, The (1974)", ["Crime", "Drama"]),
    ("8", "Twelve Monkeys (1995)", ["Sci-Fi", "Thriller"]),
    ("9", "Some Like It Hot (1959)", ["Comedy"]),
    ("10", "Apollo 13 (1995)", ["Drama"]),
    ("11", "Three Colors: Red (1994)", ["Drama"]),
    ("12", "Pride and Prejudice (1995)", ["Drama", "Romance"]),
    ("13", "Sabrina (1954)", ["Comedy", "Romance"]),
    ("14", "Sabrina (1995)", ["Comedy", "Romance"]),
    ("15", "Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
    ("16", "Fargo (1996)", ["Crime", "Thriller"]),
    ("17", "Casablanca (1942)", ["Drama", "Romance"]),
    ("18", "Nosferatu (1922)", ["Horror"]),
    ("19", "Blade Runner (1982)", ["Sci-Fi", "Film-Noir"]),
    ("20", "Groundhog Day (1993)", ["Comedy", "Romance"]),
    ("21", "Maltese Falcon, The (1941)", ["Film-Noir", "Mystery"]),
    ("22", "Shining, The (1980)", ["Horror"]),
    ("23", "Lion King, The (1994)", ["Animation", "Children's"]),
]
PRODUCTS = [
    ("p1", "Gorilla Duct Tape, Black, 1.88 in x 12 yd", ["Tapes, Adhesives & Sealants", "Duct Tape", "Gorilla"]),
    ("p2", "3M Scotch Duct Tape, Silver", ["Tapes, Adhesives & Sealants", "Duct Tape", "3M"]),
    ("p3", "Kapton Polyimide Tape 1/2 in", ["Tapes, Adhesives & Sealants", "Electrical Tape", "Tapes Master"]),
    ("p4", "3M Vinyl Electrical Tape", ["Tapes, Adhesives & Sealants", "Electrical Tape", "3M"]),
    ("p5", "HATCHBOX PLA 3D Printer Filament, 1.75 mm, Black", ["3D Printing Supplies", "3D Printing Filament", "HATCHBOX"]),
    ("p6", "HATCHBOX ABS 3D Printer Filament, 1.75 mm, White", ["3D Printing Supplies", "3D Printing Filament", "HATCHBOX"]),
    ("p7", "SainSmart TPU Flexible Filament, 1.75 mm", ["3D Printing Supplies", "3D Printing Filament", "SainSmart"]),
    ("p8", "Nema 17 Stepper Motor 2A", ["3D Printer Parts", "3D Printer Motors", "Zyltech"]),
    ("p9", "Nitrile Exam Gloves, Medium, 100 Pack", ["Lab Supplies", "Gloves", "Medline"]),
    ("p10", "Latex Exam Gloves, Large", ["Lab Supplies", "Gloves", "Medline"]),
    ("p11", "2020 Aluminum Extrusion, 500 mm", ["Raw Materials", "Aluminum Extrusions", "uxcell"]),
    ("p12", "Deep Groove Ball Bearing 6203", ["Bearings", "Ball Bearings", "uxcell"]),
    ("p13", "Stainless Steel Ball Bearing 608", ["Bearings", "Ball Bearings", "VXB"]),
    ("p14", "Digital Caliper 6 inch", ["Test, Measure & Inspect", "Calipers", "Neiko"]),
    ("p15", "Digital Multimeter with Probes", ["Test, Measure & Inspect", "Multimeters", "Neiko"]),
    ("p16", "Safety Glasses, Clear", ["Safety", "Eye Protection", "3M"]),
    ("p17", "Soldering Iron Kit 60W", ["Soldering", "Soldering Irons", "Weller"]),
    ("p18", "Lead-Free Solder Wire", ["Soldering", "Solder", "Weller"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def films() -> CatalogueIndex:
    return CatalogueIndex(make_dataset("films", FILMS, texts=False))


@pytest.fixture(scope="module")
def products() -> CatalogueIndex:
    return CatalogueIndex(make_dataset("products", PRODUCTS, texts=True))


def resolved(text: str, index: CatalogueIndex) -> str:
    """A mention as the chat would act on it: the item's title, or why there is none."""
    if REFERENCES.match(text):
        return text
    (resolution,) = index.resolve_titles([text])
    if resolution.best is not None:
        return resolution.best.title
    found = len(resolution.matches)
    return f"{text} ({found} matches)" if found else f"{text} (no match)"


def summary(reading: Understanding, index: CatalogueIndex) -> dict[str, Any]:
    """Every field the parser filled (constraints flattened), titles resolved."""
    out = reading.model_dump(exclude_defaults=True)
    out["intent"] = reading.intent
    out.update(out.pop("constraints", {}))
    if reading.feedback:
        out["feedback"] = [(resolved(m.text, index), m.sentiment) for m in reading.feedback]
    for key in ("skip", "similar_to"):
        if key in out:
            out[key] = [resolved(t, index) for t in out[key]]
    return out


def check(text: str, expected: dict[str, Any], index: CatalogueIndex) -> None:
    expected = {"intent": "recommend", **expected}
    got = summary(read_offline(text, index), index)
    assert got == expected, f"{text!r}\n got      {got}\n expected {expected}"
    request = got.get("request")
    if request is not None:  # the kept request never carries leftovers of what was cut
        assert request == request.strip(" ,.;:!?-") and " ," not in request, request
        assert normalise(request).split()[0] not in {"and", "but", "so", "or"}, request


# The examples first; then counts, eras, references, titles with "and" / "like" /
# numbers in them, typos, unknown titles, exclusions and other languages.
FILM_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("I loved Star Wars and Alien", {"intent": "feedback", "feedback": [("Star Wars (1977)", "positive"), ("Alien (1979)", "positive")]}),
    ("I loved Star Wars and Alien, recommend three sci-fi movies", {"request": "recommend three sci-fi movies", "include": ["Sci-Fi"], "count": 3, "feedback": [("Star Wars (1977)", "positive"), ("Alien (1979)", "positive")]}),
    ("three", {"count": 3}),
    ("something older", {"relative_era": "older"}),
    ("something else", {"exclude_shown": True}),
    ("not that one", {"skip": ["that"]}),
    ("a 90s comedy", {"request": "a 90s comedy", "include": ["Comedy"], "decades": ["1990s"]}),
    ("something tense for tonight", {"request": "something tense for tonight"}),
    ("I didn't like that one", {"intent": "feedback", "feedback": [("that", "negative")]}),
    ("Not that one, something more recent", {"relative_era": "newer", "skip": ["that"]}),
    ("newer ones please", {"relative_era": "newer"}),
    ("a couple of comedies", {"request": "a couple of comedies", "include": ["Comedy"], "count": 2}),
    ("give me 4 dramas without romance", {"request": "give me 4 dramas", "include": ["Drama"], "exclude": ["Romance"], "count": 4}),
    ("two more please", {"count": 2, "exclude_shown": True}),
    ("show me something different", {"exclude_shown": True}),
    ("I didn't like Alien but loved Heat", {"intent": "feedback", "feedback": [("Alien (1979)", "negative"), ("Heat (1995)", "positive")]}),
    ("I loved Heat, but not in the mood for horror. A 90s comedy?", {"request": "A 90s comedy", "include": ["Comedy"], "exclude": ["Horror"], "decades": ["1990s"], "feedback": [("Heat (1995)", "positive")]}),
    ("I loved Pride and Prejudice", {"intent": "feedback", "feedback": [("Pride and Prejudice (1995)", "positive")]}),
    ("I loved Some Like It Hot", {"intent": "feedback", "feedback": [("Some Like It Hot (1959)", "positive")]}),
    ("I loved Apollo 13", {"intent": "feedback", "feedback": [("Apollo 13 (1995)", "positive")]}),
    ("Three Colors: Red was amazing", {"intent": "feedback", "feedback": [("Three Colors: Red (1994)", "positive")]}),
    ("Alien was great, Heat was boring", {"intent": "feedback", "feedback": [("Alien (1979)", "positive"), ("Heat (1995)", "negative")]}),
    ("I loved Sabrina", {"intent": "feedback", "feedback": [("Sabrina (2 matches)", "positive")]}),
    ("I loved Sabrina 1954", {"intent": "feedback", "feedback": [("Sabrina (1954)", "positive")]}),
    ("I enjoyed the godfather", {"intent": "feedback", "feedback": [("Godfather, The (1972)", "positive")]}),
    ("I really liked The Godfather: Part II", {"intent": "feedback", "feedback": [("Godfather: Part II, The (1974)", "positive")]}),
    ("I loved Godfather 2", {"intent": "feedback", "feedback": [("Godfather: Part II, The (1974)", "positive")]}),
    ("I liked Twelve Monkyes", {"intent": "feedback", "feedback": [("Twelve Monkeys (1995)", "positive")]}),
    ("I loved Heat and Inception", {"intent": "feedback", "feedback": [("Heat (1995)", "positive"), ("Inception (no match)", "positive")]}),
    ("I loved the Godfather and Twelve Monkeys a lot", {"intent": "feedback", "feedback": [("Godfather, The (1972)", "positive"), ("Twelve Monkeys (1995)", "positive")]}),
    ("I loved it", {"intent": "feedback", "feedback": [("that", "positive")]}),
    ("I loved the second one", {"intent": "feedback", "feedback": [("#2", "positive")]}),
    ("not the first one", {"skip": ["#1"]}),
    ("nope", {"skip": ["that"]}),
    ("I've already seen Fargo", {"skip": ["Fargo (1996)"]}),
    ("not Fargo, something tense for tonight", {"request": "something tense for tonight", "skip": ["Fargo (1996)"]}),
    ("something like Blade Runner but older", {"relative_era": "older", "similar_to": ["Blade Runner (1982)"]}),
    ("more like these", {"exclude_shown": True, "similar_to": ["these"]}),
    ("I hated horror movies", {"exclude": ["Horror"]}),
    ("I love sci-fi and horror", {"include": ["Sci-Fi", "Horror"]}),
    ("no sci-fi or horror please", {"exclude": ["Sci-Fi", "Horror"]}),
    ("I'd like a film noir", {"request": "I'd like a film noir", "include": ["Film-Noir"]}),
    ("children's movies from the 90s", {"request": "children's movies from the 90s", "include": ["Children's"], "decades": ["1990s"]}),
    ("something from the twenties", {"decades": ["1920s"]}),
    ("movies from 1995", {"year_min": 1995, "year_max": 1995}),
    ("between 1970 and 1980", {"year_min": 1970, "year_max": 1980}),
    ("before 1960, no romance", {"exclude": ["Romance"], "year_max": 1959}),
    ("anything since the 80s", {"year_min": 1980}),
    ("an old comedy", {"request": "an old comedy", "include": ["Comedy"], "relative_era": "older"}),
    ("Can you recommend three?", {"count": 3}),
    ("another one", {"count": 1, "exclude_shown": True}),
    ("I'm 25 and love sci-fi", {"request": "I'm 25 and love sci-fi", "include": ["Sci-Fi"]}),
    ("a comedy or a romance", {"request": "a comedy or a romance", "include": ["Comedy", "Romance"]}),
    ("I saw The Shining last week, hated it", {"request": "I saw The Shining last week", "feedback": [("Shining, The (1980)", "negative")]}),
    ("I loved the 1995 Heat", {"intent": "feedback", "feedback": [("Heat (1995)", "positive")]}),
    ("This is great", {}),
    ("It was great", {"intent": "feedback", "feedback": [("that", "positive")]}),
    ("the third one was boring", {"intent": "feedback", "feedback": [("#3", "negative")]}),
    ("Je voudrais un film pour ce soir", {"intent": "other_language"}),
    ("映画を見たい", {"intent": "other_language"}),
    ("?!", {"intent": "empty"}),
    ("", {"intent": "empty"}),
]  # fmt: skip

PRODUCT_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("I need duct tape", {"request": "I need duct tape", "include": ["Duct Tape"]}),
    ("recommend three filaments", {"request": "recommend three filaments", "include": ["3D Printing Filament"], "count": 3}),
    ("I loved the HATCHBOX PLA filament", {"intent": "feedback", "feedback": [("HATCHBOX PLA 3D Printer Filament, 1.75 mm, Black", "positive")]}),
    ("I didn't like the Gorilla tape", {"intent": "feedback", "feedback": [("Gorilla Duct Tape, Black, 1.88 in x 12 yd", "negative")]}),
    ("I loved the nitrile gloves and the 608 ball bearing", {"intent": "feedback", "feedback": [("Nitrile Exam Gloves, Medium, 100 Pack", "positive"), ("Stainless Steel Ball Bearing 608", "positive")]}),
    ("something from 3M, not that one", {"request": "something from 3M", "include": ["3M"], "skip": ["that"]}),
    ("no more tape, show me something else", {"exclude": ["tape"], "exclude_shown": True}),
    ("a couple of nema 17 stepper motors", {"request": "a couple of nema 17 stepper motors", "count": 2}),
    ("2020 aluminum extrusion", {"request": "2020 aluminum extrusion"}),
    ("bearings without uxcell", {"request": "bearings", "include": ["Bearings"], "exclude": ["uxcell"]}),
    ("something like the Kapton tape but wider", {"request": "wider", "similar_to": ["Kapton Polyimide Tape 1/2 in"]}),
    ("soldering stuff from Weller", {"request": "soldering stuff from Weller", "include": ["Soldering", "Weller"]}),
    ("more like the second one", {"exclude_shown": True, "similar_to": ["#2"]}),
    ("I loved the HATCHBOX filament", {"intent": "feedback", "feedback": [("the HATCHBOX filament (2 matches)", "positive")]}),
    ("recommend 1.75 mm filament", {"request": "recommend 1.75 mm filament", "include": ["3D Printing Filament"]}),
    ("I bought the Kapton tape and it was great", {"request": "I bought the Kapton tape", "feedback": [("Kapton Polyimide Tape 1/2 in", "positive")]}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"), FILM_ROWS, ids=[r[0] or "<empty>" for r in FILM_ROWS]
)
def test_film_catalogue_reading(text: str, expected: dict[str, Any], films: CatalogueIndex) -> None:
    check(text, expected, films)


@pytest.mark.parametrize(("text", "expected"), PRODUCT_ROWS, ids=[r[0] for r in PRODUCT_ROWS])
def test_product_catalogue_reading(
    text: str, expected: dict[str, Any], products: CatalogueIndex
) -> None:
    check(text, expected, products)


# ------------------------------------------------------------------------ the index beneath


def test_title_keys_drop_year_brackets_and_articles() -> None:
    assert title_keys("Godfather, The (1972)") == ("godfather", "godfather", 1972)
    assert title_keys("Seven (Se7en) (1995)") == ("seven", "seven", 1995)
    assert title_keys("Dead Space 2 - Xbox 360 [Instant Access]") == (
        "dead space 2 xbox 360",
        "dead space 2",
        None,
    )
    assert normalise("Children's Sci-Fi & Café") == "childrens sci fi and cafe"
    assert word_forms("comedies") == {"comedies", "comedy"}
    assert word_forms("tape") == {"tape", "tapes"}


def test_resolution_exact_fuzzy_ambiguous_and_missing(films: CatalogueIndex) -> None:
    heat, sabrina, sabrina95, monkeys, nothing = films.resolve_titles(
        ["heat!", "Sabrina", "Sabrina (1995)", "twelve monkys", "Zzzqqq"]
    )
    assert heat.best is not None and heat.best.title == "Heat (1995)" and heat.exact  # not Heathers
    assert sabrina.best is None and [m.item_id for m in sabrina.matches] == [
        "13",
        "14",
    ]  # ties: catalogue order
    assert sabrina95.best is not None and sabrina95.best.item_id == "14"
    assert monkeys.best is not None and monkeys.best.item_id == "8" and not monkeys.exact
    assert nothing.matches == () and nothing.best is None
    assert heat.confident == heat.best and monkeys.confident == monkeys.best  # a typo is sure
    (guess,) = films.resolve_titles(["Groundhog"])  # a partial mention: best, but confirm first
    assert guess.best is not None and guess.best.item_id == "20" and guess.confident is None


def test_identical_titles_resolve_to_the_most_popular_copy() -> None:
    ds = make_dataset(
        "copies",
        [("a", "Dead Space 2", []), ("b", "Dead Space 2", []), ("c", "Dead Space", [])],
        False,
    )
    # users 3-5 choose b first (train), then c and a (their held-out valid and test items)
    more = pd.DataFrame(
        {
            "user": [u for u in (3, 4, 5) for _ in range(3)],
            "item": [1, 2, 0] * 3,
            "ts": [0, 1, 2] * 3,
            "rating": [np.nan] * 9,
        }
    )
    ds.interactions = pd.concat([ds.interactions, more])
    ds.user_ids = [*ds.user_ids, "u3", "u4", "u5"]
    (res,) = CatalogueIndex(ds).resolve_titles(["dead space 2"])
    assert res.best is not None and res.best.item_id == "b"  # b: 3 train interactions, a: 1


def test_vocabulary_comes_from_the_catalogue(products: CatalogueIndex) -> None:
    assert products.canonical_terms(["duct tapes", "HatchBox", "warp drives"]) == [
        "Duct Tape",
        "HATCHBOX",
    ]
    assert products.canonical_terms(["filaments"]) == ["3D Printing Filament"]  # the one holder
    tape = products.items_with("tape")
    assert sorted(products.item_ids[c] for c in tape) == ["p1", "p2", "p3", "p4"]
    assert "Gorilla" not in products.terms  # one item only: not offered as a constraint
    mask = products.allowed(include=["Bearings"], exclude=["uxcell"])
    assert [products.item_ids[c] for c in np.flatnonzero(mask)] == ["p13"]


def test_eras_from_title_years(films: CatalogueIndex, products: CatalogueIndex) -> None:
    assert films.has_eras and not products.has_eras
    assert films.decade(20) == 1920 and films.decade(90) == 1990 and films.decade(10) == 2010
    in_90s = films.allowed(decades=["1990s"])
    assert {films.titles[c] for c in np.flatnonzero(in_90s)} >= {"Heat (1995)", "Fargo (1996)"}
    assert not in_90s[films.item_ids.index("9")]  # Some Like It Hot (1959)
    older = films.relative_years("older", ["4", "16"])  # Heat 1995, Fargo 1996 -> before 1995
    assert older == (None, 1994)
    assert films.relative_years("newer", []) == (films.median_year + 1, None)  # type: ignore[operator]
    assert products.relative_years("older", ["p1"]) == (None, None)
    assert products.allowed(decades=["1990s"]).all()  # no dates: eras cannot filter


def test_index_is_cached_by_catalogue_content() -> None:
    first = catalogue_index(make_dataset("films", FILMS, texts=False))
    again = catalogue_index(make_dataset("films", FILMS, texts=False))
    other = catalogue_index(make_dataset("films", FILMS[:-1], texts=False))
    assert first is again and other is not first
    (hit,) = resolve_titles(make_dataset("films", FILMS, texts=False), ["Toy Story"])
    assert hit.best is not None and hit.best.item_id == "15"


def test_tokens_keep_offsets_and_drop_quotes() -> None:
    tokens = tokenize('I loved "Alien", #2 & sci-fi')
    assert [t.norm for t in tokens] == ["i", "loved", "alien", ",", "#2", "and", "sci", "-", "fi"]
    assert all('I loved "Alien", #2 & sci-fi'[t.start : t.end] == t.text for t in tokens)


def test_reading_is_the_chat_state_understanding(films: CatalogueIndex) -> None:
    reading = read_offline("I loved Heat, give me three 90s comedies older than 1999", films)
    assert type(reading) is Understanding and reading.intent == "recommend"
    assert reading.constraints.model_dump() == {
        "include": ["Comedy"],
        "exclude": [],
        "decades": ["1990s"],
        "year_min": None,
        "year_max": 1998,
        "relative_era": None,
    }
    assert [m.text for m in reading.feedback] == ["Heat"] and reading.count == 3
    assert Constraints(relative_era="older").is_empty() is False
    assert Understanding.model_validate_json(reading.model_dump_json()) == reading  # JSON edits


def test_long_messages_are_cut_and_still_read(films: CatalogueIndex) -> None:
    text = "I loved Heat. " + "blah " * 2000
    reading = read_offline(text, films)
    assert [m.text for m in reading.feedback] == ["Heat"]


# ---------------------------------------------------------------------- the benchmark data

needs_data = pytest.mark.skipif(
    not (DATA_DIR / "ml-100k" / "u.data").is_file(),
    reason=f"benchmark data not at {DATA_DIR}",
)


@functools.cache
def benchmark_index(name: str) -> CatalogueIndex:
    """One load and index per dataset for the whole run (pytest may set the fixture up often)."""
    return catalogue_index(load_dataset(name, DATA_DIR))


@pytest.fixture
def dataset_index(request: pytest.FixtureRequest) -> CatalogueIndex:
    return benchmark_index(request.param)


ML_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("I loved Star Wars and Alien", {"intent": "feedback", "feedback": [("Star Wars (1977)", "positive"), ("Alien (1979)", "positive")]}),
    ("I loved Star Wars and Alien, recommend three sci-fi movies", {"request": "recommend three sci-fi movies", "include": ["Sci-Fi"], "count": 3, "feedback": [("Star Wars (1977)", "positive"), ("Alien (1979)", "positive")]}),
    ("three", {"count": 3}),
    ("something older", {"relative_era": "older"}),
    ("something else", {"exclude_shown": True}),
    ("not that one", {"skip": ["that"]}),
    ("something tense for tonight", {"request": "something tense for tonight"}),
    ("a 90s comedy", {"request": "a 90s comedy", "include": ["Comedy"], "decades": ["1990s"]}),
    ("I didn't like that one", {"intent": "feedback", "feedback": [("that", "negative")]}),
    ("I didn't like Twelve Monkeys but loved Fargo", {"intent": "feedback", "feedback": [("Twelve Monkeys (1995)", "negative"), ("Fargo (1996)", "positive")]}),
    ("I loved the Godfather and Heat, give me two more", {"count": 2, "exclude_shown": True, "feedback": [("Godfather, The (1972)", "positive"), ("Heat (1995)", "positive")]}),
    ("I loved Godfather 2", {"intent": "feedback", "feedback": [("Godfather: Part II, The (1974)", "positive")]}),
    ("I enjoyed star wrs", {"intent": "feedback", "feedback": [("Star Wars (1977)", "positive")]}),
    ("I loved Se7en", {"intent": "feedback", "feedback": [("Seven (Se7en) (1995)", "positive")]}),
    ("I loved Sabrina", {"intent": "feedback", "feedback": [("Sabrina (2 matches)", "positive")]}),
    ("Alien was great, Heat was boring", {"intent": "feedback", "feedback": [("Alien (1979)", "positive"), ("Heat (1995)", "negative")]}),
    ("not Fargo, something from the 70s", {"decades": ["1970s"], "skip": ["Fargo (1996)"]}),
    ("something like Toy Story but newer", {"relative_era": "newer", "similar_to": ["Toy Story (1995)"]}),
    ("give me 4 dramas without romance", {"request": "give me 4 dramas", "include": ["Drama"], "exclude": ["Romance"], "count": 4}),
    ("film noir from before 1950", {"request": "film noir from before 1950", "include": ["Film-Noir"], "year_max": 1949}),
    ("children's movies from the 60s", {"request": "children's movies from the 60s", "include": ["Children's"], "decades": ["1960s"]}),
    ("something from the twenties", {"decades": ["1920s"]}),
    ("I loved Inception", {"intent": "feedback", "feedback": [("Inception (no match)", "positive")]}),
]  # fmt: skip

SCIENTIFIC_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("I need some kapton tape", {"request": "I need some kapton tape", "include": ["tape"]}),
    ("recommend three 3D printing filaments", {"request": "recommend three 3D printing filaments", "include": ["3D Printing Filament"], "count": 3}),
    ("I loved the Zyltech Nema 17 stepper motor and the Gorilla duct tape", {"intent": "feedback", "feedback": [("Zyltech Nema 17 Stepper Motor 1.7 A 0.59 Nm 84 oz.in 48mm Body w/ 1m Cable & Connector for 3D Printer/CNC", "positive"), ("the Gorilla duct tape (7 matches)", "positive")]}),
    ("not that one, something from 3M", {"request": "something from 3M", "include": ["3M"], "skip": ["that"]}),
    ("no more tape, show me something else", {"exclude": ["tape"], "exclude_shown": True}),
    ("a couple of nema 17 stepper motors", {"request": "a couple of nema 17 stepper motors", "include": ["motor"], "count": 2}),
    ("2020 aluminum extrusion", {"request": "2020 aluminum extrusion", "include": ["aluminum"]}),
    ("bearings without uxcell", {"request": "bearings", "include": ["bearing"], "exclude": ["uxcell"]}),
    ("I want PLA filament from HATCHBOX", {"request": "I want PLA filament from HATCHBOX", "include": ["filament", "HATCHBOX"]}),
    ("something older", {"relative_era": "older"}),
    ("three", {"count": 3}),
    ("I didn't like that one", {"intent": "feedback", "feedback": [("that", "negative")]}),
    ("something like the HATCHBOX PLA 3D Printer Filament, three of them", {"count": 3, "similar_to": ["the HATCHBOX PLA 3D Printer Filament (8 matches)"]}),
]  # fmt: skip

GAMES_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("I loved Dead Space and Halo 3", {"intent": "feedback", "feedback": [("Dead Space", "positive"), ("Halo 3", "positive")]}),
    ("I loved Star Wars Battlefront and The Sims 3, recommend three racing games", {"request": "recommend three racing games", "include": ["racing"], "count": 3, "feedback": [("Star Wars: Battlefront", "positive"), ("The Sims 3 (8 matches)", "positive")]}),
    ("something for my xbox 360, no sports", {"request": "something for my xbox 360", "include": ["xbox 360"], "exclude": ["sports"]}),
    ("I didn't like Skyrim", {"intent": "feedback", "feedback": [("Skyrim - Special Edition - Xbox One [Digital Code]", "negative")]}),
    ("I hated Call of Duty: Black Ops", {"intent": "feedback", "feedback": [("Call of Duty: Black Ops", "negative")]}),
    ("I loved Super Mario Galaxy but not Mario Kart", {"feedback": [("Super Mario Galaxy", "positive")], "skip": ["Mario Kart (8 matches)"]}),
    ("something like Zelda", {"include": ["zelda"]}),
    ("a couple of Wii games", {"request": "a couple of Wii games", "include": ["wii"], "count": 2}),
    ("give me 2 more", {"count": 2, "exclude_shown": True}),
    ("not that one", {"skip": ["that"]}),
    ("something else", {"exclude_shown": True}),
    ("newer ones please", {"relative_era": "newer"}),
    ("any good controllers?", {"request": "any good controllers", "include": ["controller"]}),
    ("I played Halo 3 and loved it, something similar for the PS3?", {"request": "I played Halo 3, something similar for the PS3", "include": ["ps3"], "feedback": [("Halo 3", "positive")]}),
    ("show me 4 more like the first one", {"count": 4, "exclude_shown": True, "similar_to": ["#1"]}),
    ("some playstation 4 games", {"request": "some playstation 4 games", "include": ["playstation 4"]}),
    ("something like The Last of Us Remastered, two please", {"count": 2, "similar_to": ["The Last of Us Remastered (3 matches)"]}),
]  # fmt: skip


def _cases(name: str, rows: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    return [pytest.param(name, text, expected, id=f"{name}: {text}") for text, expected in rows]


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize(
    ("dataset_index", "text", "expected"),
    _cases("ml-100k", ML_ROWS)
    + _cases("amazon-scientific", SCIENTIFIC_ROWS)
    + _cases("amazon-games", GAMES_ROWS),
    indirect=["dataset_index"],
)
def test_benchmark_catalogue_reading(
    dataset_index: CatalogueIndex, text: str, expected: dict[str, Any]
) -> None:
    check(text, expected, dataset_index)


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize(
    "dataset_index", ["ml-100k", "amazon-scientific", "amazon-games"], indirect=True
)
def test_benchmark_catalogues_have_vocabulary_and_eras_where_dated(
    dataset_index: CatalogueIndex,
) -> None:
    assert len(dataset_index.terms) > 15
    assert dataset_index.has_eras == (dataset_index.name == "ml-100k")
    every_title = dataset_index.resolve_titles(dataset_index.titles[:200])
    assert all(r.matches and r.exact for r in every_title)  # each title finds itself exactly


def test_a_models_reading_is_grounded_in_the_catalogue(films: CatalogueIndex) -> None:
    raw = Understanding.model_validate(
        {
            "intent": "recommend",
            "request": "  a tense sci-fi film ",
            "constraints": {
                "include": ["science fiction", "SCI-FI movies", "Thriller", "space westerns"],
                "exclude": ["horror films"],
                "decades": ["90s", "1980s", "the past"],
                "year_min": 2001,
                "year_max": 1985,
            },
            "feedback": [
                {"text": "the second one", "sentiment": "negative"},
                {"text": " ", "sentiment": "positive"},
            ],
            "skip": ["That one", "Alien"],
            "similar_to": ["Star Wars"],
            "count": 3,
        }
    )
    grounded = ground_reading(raw, films)
    assert grounded.constraints == Constraints(
        include=["Sci-Fi", "Thriller"],
        exclude=["Horror"],
        decades=["1990s", "1980s"],
        year_min=1985,
        year_max=2001,
    )
    assert [(m.text, m.sentiment) for m in grounded.feedback] == [("#2", "negative")]
    assert grounded.skip == ["that", "Alien"] and grounded.similar_to == ["Star Wars"]
    assert grounded.request == "a tense sci-fi film" and grounded.count == 3
    (alien,) = films.resolve_titles(grounded.skip[1:])  # titles are resolved afterwards
    assert alien.best is not None and alien.best.item_id == "2"


@pytest.mark.parametrize("seed", range(3))
def test_any_text_reads_without_error_and_keeps_a_clean_request(
    seed: int, films: CatalogueIndex
) -> None:
    rng = random.Random(seed)
    words = (
        [w for text, _ in FILM_ROWS for w in text.split()]
        + [t for _, t, _ in FILMS]
        + list(",.;!?&#-'\"()")
    )
    for _ in range(150):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))
        reading = read_offline(text, films)
        request = reading.request
        if request is not None:
            assert request == request.strip(" ,.;:!?&-/") and " ," not in request, (text, request)
        assert reading.count is None or 1 <= reading.count <= 50
