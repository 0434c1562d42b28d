"""Loaders of the known benchmark datasets: MovieLens 100K and the RecBole Amazon sequences.

See the data README for their files. ml-100k has real timestamps; the Amazon sets are sequences,
so a row's position in its user's sequence stands in for the time (``has_clock=False``).
"""

from __future__ import annotations

import csv
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from dataio.dataset import Catalog, Dataset, append_item, assemble
from dataio.validation import (
    float_column,
    id_column,
    int_column,
    no_quotes,
    read_table,
    require_columns,
    require_columns_count,
)

_SEQUENCE_COLUMNS = ("user_id:token", "item_id_list:token_seq", "item_id:token")
_SCIENTIFIC_ROOT = "Industrial & Scientific"
_TSV = {"sep": "\t", "quoting": csv.QUOTE_NONE}


# ---------------------------------------------------------------------------------- ml-100k


def load_ml100k(folder: Path) -> Dataset:
    """MovieLens 100K: ``u.data`` ratings with real timestamps, ``u.item`` + ``u.genre`` text."""
    path = folder / "u.data"
    expected = "tab-separated user_id, item_id, rating, timestamp per line (no header)"
    table = read_table(path, expected, header=None, **_TSV)
    require_columns_count(table, 4, path, expected)
    raw = pd.DataFrame(
        {
            "user_id": id_column(table[0], path, "user_id", first_line=1),
            "item_id": id_column(table[1], path, "item_id", first_line=1),
            "ts": int_column(table[3], path, "timestamp", first_line=1),
            "rating": float_column(table[2], path, "rating", first_line=1),
        }
    )
    return assemble("ml-100k", raw, _ml100k_catalog(folder), has_clock=True)


def _ml100k_catalog(folder: Path) -> Catalog:
    genres = _ml100k_genres(folder / "u.genre")
    path = folder / "u.item"
    expected = f"'|'-separated item_id|title|release date|video date|url|{len(genres)} genre flags"
    table = read_table(path, expected, header=None, sep="|", encoding="latin-1", **no_quotes())
    require_columns_count(table, 5 + len(genres), path, expected)
    flags = table.iloc[:, 5:].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    catalog = Catalog([], [], [], [])
    for row, item_flags in zip(table.itertuples(index=False), flags, strict=True):
        item_id, title, release = str(row[0]).strip(), str(row[1]).strip(), str(row[2])
        item_genres = [g for g, on in zip(genres, item_flags, strict=True) if on and g != "unknown"]
        decade = _decade(release)
        title = title or f"item {item_id}"
        text = f"{title}. Genres: {', '.join(item_genres)}." if item_genres else f"{title}."
        append_item(catalog, item_id, title, text, item_genres + ([decade] if decade else []))
    return catalog


def _ml100k_genres(path: Path) -> list[str]:
    expected = "'|'-separated genre|index lines"
    table = read_table(path, expected, header=None, sep="|", encoding="latin-1", **no_quotes())
    require_columns_count(table, 2, path, expected)
    index = int_column(table[1], path, "index", first_line=1)
    return [str(name).strip() for _, name in sorted(zip(index, table[0], strict=True))]


def _decade(release_date: str) -> str | None:
    match = re.search(r"(\d{4})\s*$", release_date)
    return f"{int(match.group(1)) // 10 * 10}s" if match else None


# ------------------------------------------------------------------- RecBole (Amazon) sets


def load_amazon_scientific(folder: Path) -> Dataset:
    """Amazon Industrial & Scientific (UniSRec preprocessing): sequences plus ASIN-keyed text."""
    raw = _read_sequences(folder / "Scientific.test.inter")
    return assemble("amazon-scientific", raw, _scientific_catalog(folder), has_clock=False)


def load_amazon_games(folder: Path) -> Dataset:
    """Amazon Video Games (LLMRank preprocessing): sequences plus titles."""
    raw = _read_sequences(folder / "Games.test.inter")
    return assemble("amazon-games", raw, _games_catalog(folder / "Games.item"), has_clock=False)


def _read_sequences(path: Path) -> pd.DataFrame:
    """One row per (user, item) from RecBole test sequences; ``ts`` is the position."""
    expected = "tab-separated RecBole sequences with header " + "\t".join(_SEQUENCE_COLUMNS)
    table = read_table(path, expected, **_TSV)
    require_columns(table, _SEQUENCE_COLUMNS, path, expected)
    users = id_column(table["user_id:token"], path, "user_id", first_line=2)
    last = id_column(table["item_id:token"], path, "item_id", first_line=2)
    sequences = (table["item_id_list:token_seq"].fillna("") + " " + last).str.split()
    rows = pd.DataFrame({"user_id": users, "item_id": sequences}).explode("item_id")
    rows = rows.reset_index(drop=True)
    rows["ts"] = rows.groupby("user_id", sort=False).cumcount().astype(np.int64)
    rows["rating"] = np.nan
    return rows


def _scientific_catalog(folder: Path) -> Catalog:
    path = folder / "Scientific.item2index"
    expected = "ASIN<TAB>integer item id per line (no header)"
    index = read_table(path, expected, header=None, **_TSV)
    require_columns_count(index, 2, path, expected)
    asins = id_column(index[0], path, "ASIN", first_line=1)
    ids = int_column(index[1], path, "item id", first_line=1)
    text_by_asin = _scientific_texts(folder / "Scientific.text")
    order = np.argsort(ids, kind="stable")
    parsed = {int(ids[i]): _split_scientific_text(text_by_asin.get(asins[i], "")) for i in order}
    known_paths = {category for _, category, _ in parsed.values() if category}
    known_paths.add(_SCIENTIFIC_ROOT)
    catalog = Catalog([], [], [], [])
    for item, (title, category, brand) in parsed.items():
        pieces = _category_pieces(category, known_paths) if category else []
        title = title or f"item {item}"
        text = ". ".join(p for p in (title, " > ".join(pieces), brand) if p) + "."
        attributes = [p for p in pieces if p != _SCIENTIFIC_ROOT] + ([brand] if brand else [])
        append_item(catalog, str(item), title, text, list(dict.fromkeys(attributes)))
    return catalog


def _scientific_texts(path: Path) -> dict[str, str]:
    expected = "tab-separated header item_id:token<TAB>text:token_seq keyed by ASIN"
    table = read_table(path, expected, **_TSV)
    require_columns(table, ("item_id:token", "text:token_seq"), path, expected)
    keys = table["item_id:token"].fillna("").str.strip()
    return dict(zip(keys, table["text:token_seq"].fillna(""), strict=True))


def _split_scientific_text(text: str) -> tuple[str, str, str]:
    """Split ``"title. category path. brand. "`` into its three parts (title may contain '. ')."""
    body = html.unescape(text).strip()
    body = body[:-1].rstrip() if body.endswith(".") else body
    segments = body.split(". ")
    at = [i for i in range(1, len(segments)) if segments[i].startswith(_SCIENTIFIC_ROOT)]
    at = at or [i for i in range(1, len(segments) - 1) if segments[i] == ""]
    if not at:
        return body, "", ""
    i = at[-1]
    return (
        ". ".join(segments[:i]).strip(),
        segments[i].strip(),
        ". ".join(segments[i + 1 :]).strip(),
    )


def _category_pieces(path: str, known_paths: set[str]) -> list[str]:
    """Cut a space-joined category path where a prefix is itself some item's full path."""
    words = path.split(" ")
    pieces: list[str] = []
    start = 0
    for end in range(1, len(words)):
        if " ".join(words[:end]) in known_paths:
            pieces.append(" ".join(words[start:end]))
            start = end
    pieces.append(" ".join(words[start:]))
    return pieces


_PLATFORM_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"playstation\s*4|\bps4\b", "playstation 4"),
    (r"playstation\s*3|\bps3\b", "playstation 3"),
    (r"playstation\s*2|\bps2\b", "playstation 2"),
    (r"playstation\s*vita|\bps\s*vita\b", "playstation vita"),
    (r"\bpsp\b", "psp"),
    (r"xbox\s*one", "xbox one"),
    (r"xbox\s*360", "xbox 360"),
    (r"\bwii\s*u\b", "wii u"),
    (r"\bwii\b", "wii"),
    (r"\b3ds\b", "nintendo 3ds"),
    (r"\bnintendo\s*ds\b|\bds\b", "nintendo ds"),
    (r"game\s*boy\s*advance|\bgba\b", "game boy advance"),
    (r"gamecube", "gamecube"),
    (r"nintendo\s*64|\bn64\b", "nintendo 64"),
    (r"super\s*nes|\bsnes\b|super\s*nintendo", "super nintendo"),
    (r"\bnes\b", "nes"),
    (r"\bswitch\b", "nintendo switch"),
    (r"dreamcast", "dreamcast"),
    (r"sega\s*genesis", "sega genesis"),
    (r"\bpc\b|windows", "pc"),
    (r"\bmac\b", "mac"),
)
_PLATFORMS = tuple((re.compile(p), name) for p, name in _PLATFORM_PATTERNS)
_FAMILIES = (("playstation", "playstation"), ("xbox", "xbox"), ("nintendo", "nintendo"))
_TITLE_STOPWORDS = frozenset(
    "the and for with from this that edition game games version pack new vs standard import "
    "digital code gba sony microsoft nintendo playstation xbox wii gamecube psp pc mac windows "
    "advance boy one 360 3ds ds vita sega".split()
)
_MAX_GAME_ATTRIBUTES = 6


def _games_catalog(path: Path) -> Catalog:
    expected = "tab-separated header item_id:token<TAB>title:token_seq"
    table = read_table(path, expected, **_TSV)
    require_columns(table, ("item_id:token", "title:token_seq"), path, expected)
    ids = id_column(table["item_id:token"], path, "item_id", first_line=2)
    catalog = Catalog([], [], [], [])
    for item_id, raw_title in zip(ids, table["title:token_seq"].fillna(""), strict=True):
        title = html.unescape(str(raw_title)).strip() or f"item {item_id}"
        append_item(catalog, item_id, title, f"{title}.", _game_attributes(title))
    return catalog


def _game_attributes(title: str) -> list[str]:
    """Platform names first, then significant lowercase title words (at most six in all)."""
    lowered = title.lower()
    found = [name for pattern, name in _PLATFORMS if pattern.search(lowered)]
    if not found:
        found = [name for word, name in _FAMILIES if word in lowered]
    words = re.findall(r"[a-z][a-z0-9']+", lowered)
    found += [w for w in words if len(w) >= 3 and w not in _TITLE_STOPWORDS]
    return list(dict.fromkeys(found))[:_MAX_GAME_ATTRIBUTES]
