"""Loader of the generic format: any folder with ``interactions.csv`` and ``items.csv``.

``interactions.csv`` (UTF-8, header required)
    ``user_id,item_id,timestamp[,rating]``. ``timestamp`` is an integer (unix seconds, or any
    integer that orders a user's interactions); ``rating`` is optional and numeric.
``items.csv`` (UTF-8, header required)
    ``item_id,title[,description]`` plus any extra text columns. A column named ``genres``,
    ``categories`` or ``tags`` is split on ``|`` or ``,`` into item attributes. The item text is the
    title, the description and every extra column (``"Column: value."``). Every item referenced by
    ``interactions.csv`` must be listed here.
``requests.csv`` (optional, UTF-8, header required)
    ``user_id,request`` (or ``instruction``): what each user asks for, passed as the request when
    the user is evaluated (the InstructRec protocol passes each user's instruction).
``candidates.csv`` (optional, UTF-8, header required)
    ``user_id,candidates`` with item ids separated by ``|``: the dataset's own fixed test candidate
    lists (each holding the user's last item, the test target), used instead of sampled ones.
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
    dataset = assemble(folder.resolve().name or "dataset", raw, catalog, has_clock=True)
    dataset.requests = _requests(folder / "requests.csv", dataset)
    dataset.fixed_candidates = _fixed_candidates(folder / "candidates.csv", dataset)
    return dataset


def _requests(path: Path, dataset: Dataset) -> dict[str, str]:
    """The optional per-user requests (``user_id,request`` or ``user_id,instruction``)."""
    if not path.exists():
        return {}
    expected = "a CSV with header user_id,request (or user_id,instruction)"
    table = read_table(path, expected)
    table.columns = [str(c).strip().lower() for c in table.columns]
    column = "request" if "request" in table.columns else "instruction"
    require_columns(table, ("user_id", column), path, expected)
    users = id_column(table["user_id"], path, "user_id", first_line=2).tolist()
    _known(path, users, dataset.user_index, "user", "interactions.csv")
    texts = [str(t).strip() for t in table[column]]
    return {u: t for u, t in zip(users, texts, strict=True) if t}


def _fixed_candidates(path: Path, dataset: Dataset) -> dict[str, list[str]]:
    """The optional fixed test candidate lists (``user_id,candidates`` with ``|``-separated ids)."""
    if not path.exists():
        return {}
    expected = "a CSV with header user_id,candidates (item ids separated by '|')"
    table = read_table(path, expected)
    table.columns = [str(c).strip().lower() for c in table.columns]
    require_columns(table, ("user_id", "candidates"), path, expected)
    users = id_column(table["user_id"], path, "user_id", first_line=2).tolist()
    _known(path, users, dataset.user_index, "user", "interactions.csv")
    lists = {
        u: [i.strip() for i in str(c).split("|") if i.strip()]
        for u, c in zip(users, table["candidates"], strict=True)
    }
    _known(
        path,
        [i for items in lists.values() for i in items],
        dataset.item_index,
        "item",
        "items.csv",
    )
    repeated = [u for u, items in lists.items() if len(set(items)) != len(items)]
    if repeated:
        raise DatasetError(f"{path}: user {repeated[0]!r} lists an item twice; each candidate once")
    return lists


def _known(path: Path, ids: list[str], index: dict[str, int], kind: str, where: str) -> None:
    unknown = [i for i in dict.fromkeys(ids) if i not in index]
    if unknown:
        examples = ", ".join(repr(i) for i in unknown[:5])
        raise DatasetError(
            f"{path}: {len(unknown)} {kind} id(s) are not in {where} (for example {examples}); "
            f"every {kind} here must appear there"
        )


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
