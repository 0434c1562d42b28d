"""Loader of the generic format: any folder with ``interactions.csv`` and ``items.csv``.

``interactions.csv`` (UTF-8, header required)
    ``user_id,item_id,timestamp[,rating]``. ``timestamp`` is an integer (unix seconds, or any
    integer that orders a user's interactions); ``rating`` is optional and numeric.
``items.csv`` (UTF-8, header required)
    ``item_id,title[,description]`` plus any extra text columns. A column named ``genres``,
    ``categories`` or ``tags`` is split on ``|`` or ``,`` into item attributes. The item text is the
    title, the description and every extra column (``"Column: value."``). Every item referenced by
    ``interactions.csv`` must be listed here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from dataio.dataset import Catalog, Dataset, DatasetError, append_item, assemble
from dataio.validation import float_column, id_column, int_column, read_table, require_columns

_ATTRIBUTE_COLUMNS = frozenset({"genres", "categories", "tags"})


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
    return assemble(folder.resolve().name or "dataset", raw, catalog, has_clock=True)


def _generic_interactions(path: Path) -> pd.DataFrame:
    expected = "a CSV with header user_id,item_id,timestamp[,rating] and integer timestamps"
    table = read_table(path, expected)
    table.columns = [str(c).strip().lower() for c in table.columns]
    require_columns(table, ("user_id", "item_id", "timestamp"), path, expected)
    ratings = table["rating"] if "rating" in table.columns else pd.Series("", index=table.index)
    return pd.DataFrame(
        {
            "user_id": id_column(table["user_id"], path, "user_id", first_line=2),
            "item_id": id_column(table["item_id"], path, "item_id", first_line=2),
            "ts": int_column(table["timestamp"], path, "timestamp", first_line=2),
            "rating": float_column(ratings, path, "rating", first_line=2),
        }
    )


def _generic_catalog(path: Path) -> Catalog:
    expected = "a CSV with header item_id,title[,description] plus optional extra text columns"
    table = read_table(path, expected)
    core = {"item_id", "title", "description"}
    table.columns = [
        name.lower() if name.lower() in core else name
        for name in (str(c).strip() for c in table.columns)
    ]
    require_columns(table, ("item_id", "title"), path, expected)
    ids = id_column(table["item_id"], path, "item_id", first_line=2)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        examples = ", ".join(repr(i) for i in pd.unique(repeated)[:5])
        raise DatasetError(f"{path}: item_id must be unique, repeated: {examples}")
    extra = [c for c in table.columns if c not in core]
    catalog = Catalog([], [], [], [])
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
        append_item(catalog, item_id, title, text, list(dict.fromkeys(attributes)))
    return catalog


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else f"{text}."
