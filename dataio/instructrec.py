"""Import iAgent's InstructRec files (the MemRec paper's benchmark) into the generic format.

An InstructRec pickle (``booksAll_recagent.pkl``, ``goodreadsAll_recagent.pkl``, ...) is a pandas
frame with one row per user: ``reviewerID``; ``asin``, the user's item ids in order with the test
target last; ``title`` / ``description`` / ``reviewText``, lists aligned with ``asin``;
``instruction``, the user's request in their words; ``persona``; and ``ranked_lists``, the fixed
10 candidates the paper ranks (the target among them). The optional mapping CSV
(``combined_books_asin_mapping.csv``) names items by an ``index`` / ``item_id`` column (the ids
the lists use) or by ``asin``, with ``title`` and optionally ``description``: it gives text to
candidates no history contains.

The import writes a generic-format folder: ``interactions.csv`` (timestamps are positions in the
sequence), ``items.csv``, ``requests.csv`` (the instructions) and ``candidates.csv`` (the
ranked lists), so ``memrec eval --dataset <folder>`` ranks each user's own 10 candidates with
their instruction as the request. Reviews stay out of the item text: they are one user's words.

A pickle can run code when it is read: import only files from a source you trust.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dataio.dataset import DatasetError

logger = logging.getLogger(__name__)

REQUIRED = ("reviewerID", "asin", "instruction", "ranked_lists")
_ID_COLUMNS = ("index", "item_id", "asin")


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote."""

    folder: Path
    users: int
    items: int
    interactions: int
    requests: int
    candidate_lists: int


def default_folder(pkl: Path, data_dir: Path) -> Path:
    """``<data_dir>/instructrec-<domain>`` for ``<domain>All_recagent.pkl`` (else the stem)."""
    stem = pkl.stem
    domain = stem.split("All_recagent")[0] if "All_recagent" in stem else stem
    return data_dir / f"instructrec-{domain.lower()}"


def import_instructrec(pkl: Path, out: Path, mapping: Path | None = None) -> ImportReport:
    """Convert the pickle (and mapping) at ``pkl`` into a generic-format folder ``out``."""
    frame = _read_pickle(pkl)
    texts = _mapping(mapping) if mapping is not None else {}
    rows: list[dict[str, Any]] = [
        {str(k): v for k, v in row.items()} for row in frame.to_dict("records")
    ]
    items: dict[str, tuple[str, str]] = {}
    interactions: list[tuple[str, str, int]] = []
    requests: list[tuple[str, str]] = []
    candidates: list[tuple[str, str]] = []
    seen_users: set[str] = set()
    for n, row in enumerate(rows):
        user = _text(row["reviewerID"]) or f"u{n}"
        if user in seen_users:
            raise DatasetError(f"{pkl}: reviewerID {user!r} appears twice; one row per user")
        seen_users.add(user)
        history = [_text(i) for i in _as_list(row["asin"], pkl, "asin", user)]
        if len(history) < 3:
            logger.info(
                "%s: user %s has %d items (fewer than 3): not evaluated", pkl, user, len(history)
            )
        titles = _aligned(row, "title", len(history))
        descriptions = _aligned(row, "description", len(history))
        for pos, item in enumerate(history):
            interactions.append((user, item, pos + 1))
            _add_item(items, item, titles[pos], descriptions[pos], texts)
        ranked = [_text(i) for i in _as_list(row["ranked_lists"], pkl, "ranked_lists", user)]
        if history and history[-1] not in ranked:
            raise DatasetError(
                f"{pkl}: the ranked_lists of user {user!r} do not hold their last item "
                f"{history[-1]!r} (the test target); is this an InstructRec *_recagent.pkl?"
            )
        for item in ranked:
            _add_item(items, item, "", "", texts)
        candidates.append((user, "|".join(dict.fromkeys(ranked))))
        instruction = _text(row.get("instruction"))
        if instruction:
            requests.append((user, instruction))
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "interactions.csv", ("user_id", "item_id", "timestamp"), interactions)
    _write(
        out / "items.csv",
        ("item_id", "title", "description"),
        [(i, t or f"item {i}", d) for i, (t, d) in items.items()],
    )
    _write(out / "requests.csv", ("user_id", "request"), requests)
    _write(out / "candidates.csv", ("user_id", "candidates"), candidates)
    report = ImportReport(
        out, len(rows), len(items), len(interactions), len(requests), len(candidates)
    )
    logger.info("imported %s into %s: %s", pkl, out, report)
    return report


def _read_pickle(pkl: Path) -> pd.DataFrame:
    if not pkl.is_file():
        raise DatasetError(f"missing file {pkl}; expected an InstructRec *_recagent.pkl")
    try:
        frame = pd.read_pickle(pkl)
    except Exception as exc:  # pickle raises anything a damaged or foreign file makes it raise
        raise DatasetError(
            f"{pkl} could not be read as a pandas pickle ({type(exc).__name__}: {exc}); "
            "expected an InstructRec *_recagent.pkl"
        ) from exc
    if not isinstance(frame, pd.DataFrame):
        raise DatasetError(f"{pkl} holds a {type(frame).__name__}, not a pandas DataFrame")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{pkl} lacks the column(s) {missing}; an InstructRec pickle has "
            f"{', '.join(REQUIRED)} (plus title, description, reviewText, persona)"
        )
    return frame


def _mapping(path: Path) -> dict[str, tuple[str, str]]:
    """Item id -> (title, description) from the mapping CSV, under every id column it has."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} could not be read as a CSV mapping file: {exc}") from exc
    ids = [c for c in _ID_COLUMNS if c in table.columns]
    if not ids or "title" not in table.columns:
        raise DatasetError(
            f"{path} needs a title column and an id column ({', '.join(_ID_COLUMNS)}); it has "
            f"{', '.join(map(str, table.columns))}"
        )
    description = table["description"] if "description" in table.columns else [""] * len(table)
    out: dict[str, tuple[str, str]] = {}
    for column in ids:
        for key, title, text in zip(table[column], table["title"], description, strict=True):
            out.setdefault(str(key).strip(), (str(title).strip(), str(text).strip()))
    return out


def _add_item(
    items: dict[str, tuple[str, str]],
    item: str,
    title: str,
    description: str,
    texts: dict[str, tuple[str, str]],
) -> None:
    """Record an item's text: the row's own, else the mapping's, the first non-empty one kept."""
    mapped_title, mapped_text = texts.get(item, ("", ""))
    old_title, old_text = items.get(item, ("", ""))
    items[item] = (
        old_title or title or mapped_title,
        old_text or description or mapped_text,
    )


def _as_list(value: Any, pkl: Path, column: str, user: str) -> list[Any]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise DatasetError(f"{pkl}: {column} of user {user!r} is not a list ({value!r:.60})")
    return list(value)


def _aligned(row: dict[str, Any], column: str, n: int) -> list[str]:
    """The row's list ``column`` aligned with its history ('' where absent or short)."""
    value = row.get(column)
    if value is not None and hasattr(value, "tolist"):
        value = value.tolist()
    values = [_text(v) for v in value] if isinstance(value, list | tuple) else []
    return (values + [""] * n)[:n]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value).strip()
    return " ".join(str(value).split())


def _write(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    temporary.replace(path)
