"""Datasets: one in-memory shape for every source (ml-100k, RecBole sequences, the generic format).

Users and items are addressed by dense integer codes inside the project (fast sparse indexing)
and by their original string ids at every boundary (CLI, graph inputs, files).

``load_dataset(name_or_path)`` reads one of the known benchmark datasets from the data directory
(``ml-100k``, ``amazon-scientific``, ``amazon-games``; see the data README for their files) or a
folder in the **generic format**:

``interactions.csv`` (UTF-8, header required)
    ``user_id,item_id,timestamp[,rating]``. ``timestamp`` is an integer (unix seconds, or any
    integer that orders a user's interactions); ``rating`` is optional and numeric.
``items.csv`` (UTF-8, header required)
    ``item_id,title[,description]`` plus any extra text columns. A column named ``genres``,
    ``categories`` or ``tags`` is split on ``|`` or ``,`` into item attributes. The item text is the
    title, the description and every extra column (``"Column: value."``). Every item referenced by
    ``interactions.csv`` must be listed here.

Codes: users are numbered in ascending numeric order when every id is an integer, otherwise in
order of first appearance; items follow the catalog order (``u.item``, the item index,
``items.csv``) with items seen only in interactions appended. Exact duplicate rows are dropped,
and a repeated (user, item) pair keeps only its earliest occurrence.
"""

from __future__ import annotations

import csv
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from memory_store.paths import resolve_data_dir

logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset could not be read: says which file and what was expected."""


@dataclass
class Dataset:
    """A loaded dataset: interactions plus item text, with dense integer codes.

    ``interactions`` has integer columns ``user`` and ``item`` (codes), ``ts`` (int64 unix seconds,
    or the position in the user's sequence where the data has no clock) and ``rating`` (float,
    NaN when the source has none). Rows are sorted by (user, ts, original order).
    """

    name: str
    interactions: pd.DataFrame
    user_ids: list[str]
    item_ids: list[str]
    item_titles: list[str]
    item_texts: list[str]
    item_attributes: list[list[str]] = field(default_factory=list)
    has_clock: bool = True

    @property
    def n_users(self) -> int:
        """Number of users (codes are 0..n_users-1)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items (codes are 0..n_items-1)."""
        return len(self.item_ids)

    @cached_property
    def user_index(self) -> dict[str, int]:
        """Map from original user id to code."""
        return {u: i for i, u in enumerate(self.user_ids)}

    @cached_property
    def item_index(self) -> dict[str, int]:
        """Map from original item id to code."""
        return {it: i for i, it in enumerate(self.item_ids)}

    def item_popularity(self) -> np.ndarray:
        """Interaction count per item over all interactions."""
        return np.bincount(self.interactions["item"].to_numpy(), minlength=self.n_items)


KNOWN_DATASETS = ("ml-100k", "amazon-scientific", "amazon-games")

GENERIC_FORMAT = (
    "a folder with interactions.csv (header user_id,item_id,timestamp[,rating]; integer "
    "timestamps) and items.csv (header item_id,title[,description] plus any extra text "
    "columns; a genres, categories or tags column is split on '|' or ',' into attributes)"
)

_ATTRIBUTE_COLUMNS = frozenset({"genres", "categories", "tags"})
_SEQUENCE_COLUMNS = ("user_id:token", "item_id_list:token_seq", "item_id:token")
_SCIENTIFIC_ROOT = "Industrial & Scientific"
_TSV = {"sep": "\t", "quoting": csv.QUOTE_NONE}


@dataclass
class _Catalog:
    """Item side of a source before encoding: ids in catalog order with their text."""

    item_ids: list[str]
    titles: list[str]
    texts: list[str]
    attributes: list[list[str]]


def load_dataset(name_or_path: str, data_dir: Path | str | None = None) -> Dataset:
    """Load a known dataset from ``<data_dir>/<name>/`` or a folder in the generic format."""
    if name_or_path in KNOWN_DATASETS:
        folder = resolve_data_dir(data_dir) / name_or_path
        if not folder.is_dir():
            raise DatasetError(
                f"dataset {name_or_path!r} not found: {folder} is not a folder. Point the data "
                f"directory (--data-dir or MEMREC_DATA_DIR) at the folder that contains "
                f"{name_or_path}/, or download it (ml-100k downloads automatically)."
            )
        return _KNOWN_LOADERS[name_or_path](folder)
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return load_generic(folder)
    raise DatasetError(
        f"unknown dataset {name_or_path!r}: it is neither a known dataset "
        f"({', '.join(KNOWN_DATASETS)}) nor a folder. Give a known name or {GENERIC_FORMAT}."
    )


# ---------------------------------------------------------------------------------- ml-100k


def load_ml100k(folder: Path) -> Dataset:
    """MovieLens 100K: ``u.data`` ratings with real timestamps, ``u.item`` + ``u.genre`` text."""
    path = folder / "u.data"
    expected = "tab-separated user_id, item_id, rating, timestamp per line (no header)"
    table = _read_table(path, expected, header=None, **_TSV)
    _require_columns_count(table, 4, path, expected)
    raw = pd.DataFrame(
        {
            "user_id": _id_column(table[0], path, "user_id", first_line=1),
            "item_id": _id_column(table[1], path, "item_id", first_line=1),
            "ts": _int_column(table[3], path, "timestamp", first_line=1),
            "rating": _float_column(table[2], path, "rating", first_line=1),
        }
    )
    return _assemble("ml-100k", raw, _ml100k_catalog(folder), has_clock=True)


def _ml100k_catalog(folder: Path) -> _Catalog:
    genres = _ml100k_genres(folder / "u.genre")
    path = folder / "u.item"
    expected = f"'|'-separated item_id|title|release date|video date|url|{len(genres)} genre flags"
    table = _read_table(path, expected, header=None, sep="|", encoding="latin-1", **_no_quotes())
    _require_columns_count(table, 5 + len(genres), path, expected)
    flags = table.iloc[:, 5:].apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy() > 0
    catalog = _Catalog([], [], [], [])
    for row, item_flags in zip(table.itertuples(index=False), flags, strict=True):
        item_id, title, release = str(row[0]).strip(), str(row[1]).strip(), str(row[2])
        item_genres = [g for g, on in zip(genres, item_flags, strict=True) if on and g != "unknown"]
        decade = _decade(release)
        title = title or f"item {item_id}"
        text = f"{title}. Genres: {', '.join(item_genres)}." if item_genres else f"{title}."
        _append_item(catalog, item_id, title, text, item_genres + ([decade] if decade else []))
    return catalog


def _ml100k_genres(path: Path) -> list[str]:
    expected = "'|'-separated genre|index lines"
    table = _read_table(path, expected, header=None, sep="|", encoding="latin-1", **_no_quotes())
    _require_columns_count(table, 2, path, expected)
    index = _int_column(table[1], path, "index", first_line=1)
    return [str(name).strip() for _, name in sorted(zip(index, table[0], strict=True))]


def _decade(release_date: str) -> str | None:
    match = re.search(r"(\d{4})\s*$", release_date)
    return f"{int(match.group(1)) // 10 * 10}s" if match else None


# ------------------------------------------------------------------- RecBole (Amazon) sets


def load_amazon_scientific(folder: Path) -> Dataset:
    """Amazon Industrial & Scientific (UniSRec preprocessing): sequences plus ASIN-keyed text."""
    raw = _read_sequences(folder / "Scientific.test.inter")
    return _assemble("amazon-scientific", raw, _scientific_catalog(folder), has_clock=False)


def load_amazon_games(folder: Path) -> Dataset:
    """Amazon Video Games (LLMRank preprocessing): sequences plus titles."""
    raw = _read_sequences(folder / "Games.test.inter")
    return _assemble("amazon-games", raw, _games_catalog(folder / "Games.item"), has_clock=False)


def _read_sequences(path: Path) -> pd.DataFrame:
    """One row per (user, item) from RecBole test sequences; ``ts`` is the position."""
    expected = "tab-separated RecBole sequences with header " + "\t".join(_SEQUENCE_COLUMNS)
    table = _read_table(path, expected, **_TSV)
    _require_columns(table, _SEQUENCE_COLUMNS, path, expected)
    users = _id_column(table["user_id:token"], path, "user_id", first_line=2)
    last = _id_column(table["item_id:token"], path, "item_id", first_line=2)
    sequences = (table["item_id_list:token_seq"].fillna("") + " " + last).str.split()
    rows = pd.DataFrame({"user_id": users, "item_id": sequences}).explode("item_id")
    rows = rows.reset_index(drop=True)
    rows["ts"] = rows.groupby("user_id", sort=False).cumcount().astype(np.int64)
    rows["rating"] = np.nan
    return rows


def _scientific_catalog(folder: Path) -> _Catalog:
    path = folder / "Scientific.item2index"
    expected = "ASIN<TAB>integer item id per line (no header)"
    index = _read_table(path, expected, header=None, **_TSV)
    _require_columns_count(index, 2, path, expected)
    asins = _id_column(index[0], path, "ASIN", first_line=1)
    ids = _int_column(index[1], path, "item id", first_line=1)
    text_by_asin = _scientific_texts(folder / "Scientific.text")
    order = np.argsort(ids, kind="stable")
    parsed = {int(ids[i]): _split_scientific_text(text_by_asin.get(asins[i], "")) for i in order}
    known_paths = {category for _, category, _ in parsed.values() if category}
    known_paths.add(_SCIENTIFIC_ROOT)
    catalog = _Catalog([], [], [], [])
    for item, (title, category, brand) in parsed.items():
        pieces = _category_pieces(category, known_paths) if category else []
        title = title or f"item {item}"
        text = ". ".join(p for p in (title, " > ".join(pieces), brand) if p) + "."
        attributes = [p for p in pieces if p != _SCIENTIFIC_ROOT] + ([brand] if brand else [])
        _append_item(catalog, str(item), title, text, list(dict.fromkeys(attributes)))
    return catalog


def _scientific_texts(path: Path) -> dict[str, str]:
    expected = "tab-separated header item_id:token<TAB>text:token_seq keyed by ASIN"
    table = _read_table(path, expected, **_TSV)
    _require_columns(table, ("item_id:token", "text:token_seq"), path, expected)
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


def _games_catalog(path: Path) -> _Catalog:
    expected = "tab-separated header item_id:token<TAB>title:token_seq"
    table = _read_table(path, expected, **_TSV)
    _require_columns(table, ("item_id:token", "title:token_seq"), path, expected)
    ids = _id_column(table["item_id:token"], path, "item_id", first_line=2)
    catalog = _Catalog([], [], [], [])
    for item_id, raw_title in zip(ids, table["title:token_seq"].fillna(""), strict=True):
        title = html.unescape(str(raw_title)).strip() or f"item {item_id}"
        _append_item(catalog, item_id, title, f"{title}.", _game_attributes(title))
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


# ------------------------------------------------------------------------- generic format


def load_generic(folder: Path) -> Dataset:
    """A folder in the generic format (see the module docstring); named after the folder."""
    folder = Path(folder)
    raw = _generic_interactions(folder / "interactions.csv")
    catalog = _generic_catalog(folder / "items.csv")
    unknown = pd.unique(raw.loc[~raw["item_id"].isin(catalog.item_ids), "item_id"])
    if len(unknown):
        examples = ", ".join(repr(i) for i in unknown[:5])
        raise DatasetError(
            f"{folder / 'interactions.csv'}: {len(unknown)} item id(s) are not listed in "
            f"items.csv (for example {examples}); every item in interactions.csv needs a row "
            "in items.csv"
        )
    return _assemble(folder.resolve().name or "dataset", raw, catalog, has_clock=True)


def _generic_interactions(path: Path) -> pd.DataFrame:
    expected = "a CSV with header user_id,item_id,timestamp[,rating] and integer timestamps"
    table = _read_table(path, expected)
    table.columns = [str(c).strip().lower() for c in table.columns]
    _require_columns(table, ("user_id", "item_id", "timestamp"), path, expected)
    ratings = table["rating"] if "rating" in table.columns else pd.Series("", index=table.index)
    return pd.DataFrame(
        {
            "user_id": _id_column(table["user_id"], path, "user_id", first_line=2),
            "item_id": _id_column(table["item_id"], path, "item_id", first_line=2),
            "ts": _int_column(table["timestamp"], path, "timestamp", first_line=2),
            "rating": _float_column(ratings, path, "rating", first_line=2),
        }
    )


def _generic_catalog(path: Path) -> _Catalog:
    expected = "a CSV with header item_id,title[,description] plus optional extra text columns"
    table = _read_table(path, expected)
    core = {"item_id", "title", "description"}
    table.columns = [
        name.lower() if name.lower() in core else name
        for name in (str(c).strip() for c in table.columns)
    ]
    _require_columns(table, ("item_id", "title"), path, expected)
    ids = _id_column(table["item_id"], path, "item_id", first_line=2)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        examples = ", ".join(repr(i) for i in pd.unique(repeated)[:5])
        raise DatasetError(f"{path}: item_id must be unique, repeated: {examples}")
    extra = [c for c in table.columns if c not in core]
    catalog = _Catalog([], [], [], [])
    for item_id, row in zip(ids, table.fillna("").to_dict("records"), strict=True):
        title = str(row["title"]).strip() or f"item {item_id}"
        parts = [title, str(row.get("description", "")).strip()]
        attributes: list[str] = []
        for column in extra:
            value = str(row[column]).strip()
            if column.lower() in _ATTRIBUTE_COLUMNS:
                values = [v.strip() for v in re.split(r"[|,]", value) if v.strip()]
                attributes += values
                value = ", ".join(values)
            parts.append(f"{column}: {value}" if value else "")
        text = " ".join(_sentence(p) for p in parts if p)
        _append_item(catalog, item_id, title, text, list(dict.fromkeys(attributes)))
    return catalog


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."


# -------------------------------------------------------------------------------- assembly


def _append_item(catalog: _Catalog, item_id: str, title: str, text: str, attrs: list[str]) -> None:
    catalog.item_ids.append(item_id)
    catalog.titles.append(title)
    catalog.texts.append(text)
    catalog.attributes.append(attrs)


def _assemble(name: str, raw: pd.DataFrame, catalog: _Catalog, *, has_clock: bool) -> Dataset:
    """Encode ids, sort by (user, ts, original order) and drop duplicates (vectorised)."""
    raw = raw.reset_index(drop=True)
    exact = raw.duplicated().to_numpy()
    catalog = _dedupe_catalog(catalog)
    known = pd.Index(catalog.item_ids)
    extra = [str(i) for i in pd.unique(raw.loc[~raw["item_id"].isin(known), "item_id"])]
    item_ids = catalog.item_ids + extra
    user_ids = _user_order(raw["user_id"])
    frame = pd.DataFrame(
        {
            "user": pd.Index(user_ids).get_indexer(pd.Index(raw["user_id"])).astype(np.int64),
            "item": pd.Index(item_ids).get_indexer(pd.Index(raw["item_id"])).astype(np.int64),
            "ts": raw["ts"].to_numpy(dtype=np.int64),
            "rating": raw["rating"].to_numpy(dtype=np.float64),
            "order": np.arange(len(raw), dtype=np.int64),
        }
    )[~exact]
    frame = frame.sort_values(["user", "ts", "order"])
    repeated = frame.duplicated(["user", "item"], keep="first").to_numpy()
    frame = frame[~repeated].drop(columns="order").reset_index(drop=True)
    _log_assembly(name, int(exact.sum()), int(repeated.sum()), len(extra), frame)
    return Dataset(
        name=name,
        interactions=frame,
        user_ids=user_ids,
        item_ids=item_ids,
        item_titles=catalog.titles + [f"item {i}" for i in extra],
        item_texts=catalog.texts + [f"item {i}." for i in extra],
        item_attributes=catalog.attributes + [[] for _ in extra],
        has_clock=has_clock,
    )


def _dedupe_catalog(catalog: _Catalog) -> _Catalog:
    first = ~pd.Index(catalog.item_ids).duplicated()
    if first.all():
        return catalog
    keep = np.flatnonzero(first)
    logger.info("dropped %d repeated catalog rows (kept the first)", len(first) - len(keep))
    return _Catalog(
        [catalog.item_ids[i] for i in keep],
        [catalog.titles[i] for i in keep],
        [catalog.texts[i] for i in keep],
        [catalog.attributes[i] for i in keep],
    )


def _user_order(user_ids: pd.Series) -> list[str]:
    """Numeric order when every id is an integer, else order of first appearance."""
    unique = [str(u) for u in pd.unique(user_ids)]
    if all(u.isdigit() for u in unique):
        return sorted(unique, key=lambda u: (int(u), u))
    return unique


def _log_assembly(name: str, exact: int, repeated: int, extra: int, frame: pd.DataFrame) -> None:
    if exact or repeated:
        logger.info(
            "%s: dropped %d exact duplicate rows and %d repeated (user, item) pairs "
            "(kept the earliest)",
            name,
            exact,
            repeated,
        )
    if extra:
        logger.info("%s: %d items have interactions but no text", name, extra)
    logger.info(
        "%s: %d users, %d items, %d interactions",
        name,
        frame["user"].nunique(),
        frame["item"].nunique(),
        len(frame),
    )


# ------------------------------------------------------------------------------- reading


def _no_quotes() -> dict[str, Any]:
    return {"quoting": csv.QUOTE_NONE}


def _read_table(path: Path, expected: str, **options: Any) -> pd.DataFrame:
    """``pd.read_csv`` of strings, turning every read failure into a ``DatasetError``."""
    if not path.is_file():
        raise DatasetError(f"missing file {path}; expected {expected}")
    encoding = options.pop("encoding", "utf-8")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, **options)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path} is not valid {encoding} text ({exc.reason} at byte {exc.start}); "
            f"save it as UTF-8. Expected {expected}"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DatasetError(f"{path} is empty; expected {expected}") from exc
    except pd.errors.ParserError as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise DatasetError(f"{path} could not be parsed ({reason}); expected {expected}") from exc
    if table.empty:
        raise DatasetError(f"{path} has no data rows; expected {expected}")
    return table


def _require_columns(table: pd.DataFrame, columns: tuple[str, ...], path: Path, expected: str):
    missing = [c for c in columns if c not in table.columns]
    if missing:
        found = ", ".join(str(c) for c in table.columns)
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {found}); expected {expected}"
        )


def _require_columns_count(table: pd.DataFrame, count: int, path: Path, expected: str) -> None:
    if table.shape[1] != count:
        raise DatasetError(
            f"{path}: found {table.shape[1]} columns, not {count}; expected {expected}"
        )


def _bad_rows(path: Path, column: str, values: pd.Series, bad: np.ndarray, first_line: int) -> str:
    lines = np.flatnonzero(bad)[:3]
    shown = ", ".join(f"line {i + first_line}: {values.iat[i]!r}" for i in lines)
    return f"{path}: {int(bad.sum())} bad {column} value(s) ({shown})"


def _id_column(values: pd.Series, path: Path, column: str, *, first_line: int) -> pd.Series:
    ids = values.fillna("").astype(str).str.strip()
    empty = (ids == "").to_numpy()
    if empty.any():
        raise DatasetError(
            _bad_rows(path, column, ids, empty, first_line) + "; ids must be non-empty"
        )
    return ids


def _int_column(values: pd.Series, path: Path, column: str, *, first_line: int) -> np.ndarray:
    text = values.fillna("").astype(str).str.strip()
    bad = ~text.str.fullmatch(r"[+-]?\d{1,18}").to_numpy()
    if bad.any():
        raise DatasetError(_bad_rows(path, column, text, bad, first_line) + "; expected integers")
    return text.astype(np.int64).to_numpy()


def _float_column(values: pd.Series, path: Path, column: str, *, first_line: int) -> np.ndarray:
    text = values.fillna("").astype(str).str.strip()
    numbers = pd.to_numeric(text.where(text != ""), errors="coerce")
    bad = (numbers.isna() & (text != "")).to_numpy()
    if bad.any():
        raise DatasetError(_bad_rows(path, column, text, bad, first_line) + "; expected numbers")
    return numbers.to_numpy(dtype=np.float64)


_KNOWN_LOADERS: dict[str, Callable[[Path], Dataset]] = {
    "ml-100k": load_ml100k,
    "amazon-scientific": load_amazon_scientific,
    "amazon-games": load_amazon_games,
}
