"""The in-memory shape of every dataset, and how a loader's rows become one.

Users and items are addressed by dense integer codes inside the project (fast sparse indexing)
and by their original string ids at every boundary (CLI, graph inputs, files).

Codes: users are numbered in ascending numeric order when every id is an integer, otherwise in
order of first appearance; items follow the catalog order (``u.item``, the item index,
``items.csv``) with items seen only in interactions appended. Exact duplicate rows are dropped,
and a repeated (user, item) pair keeps only its earliest occurrence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from dataio.paths import KNOWN_DATASETS

__all__ = ["GENERIC_FORMAT", "KNOWN_DATASETS", "Catalog", "Dataset", "DatasetError"]

logger = logging.getLogger(__name__)

GENERIC_FORMAT = (
    "a folder with interactions.csv (header user_id,item_id,timestamp[,rating]; integer "
    "timestamps) and items.csv (header item_id,title[,description] plus any extra text "
    "columns; a genres, categories or tags column is split on '|' or ',' into attributes)"
)


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
    requests: dict[str, str] = field(default_factory=dict)  # user id -> their request / instruction
    fixed_candidates: dict[str, list[str]] = field(default_factory=dict)  # user -> own test list

    def __setstate__(self, state: dict[str, object]) -> None:
        """Unpickle snapshots written before ``requests`` / ``fixed_candidates`` existed."""
        self.__dict__.update({"requests": {}, "fixed_candidates": {}, **state})

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


@dataclass
class Catalog:
    """Item side of a source before encoding: ids in catalog order with their text."""

    item_ids: list[str]
    titles: list[str]
    texts: list[str]
    attributes: list[list[str]]


# -------------------------------------------------------------------------------- assembly


def append_item(catalog: Catalog, item_id: str, title: str, text: str, attrs: list[str]) -> None:
    catalog.item_ids.append(item_id)
    catalog.titles.append(title)
    catalog.texts.append(text)
    catalog.attributes.append(attrs)


def assemble(name: str, raw: pd.DataFrame, catalog: Catalog, *, has_clock: bool) -> Dataset:
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


def _dedupe_catalog(catalog: Catalog) -> Catalog:
    first = ~pd.Index(catalog.item_ids).duplicated()
    if first.all():
        return catalog
    keep = np.flatnonzero(first)
    logger.info("dropped %d repeated catalog rows (kept the first)", len(first) - len(keep))
    return Catalog(
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
