"""The leave-one-out split of the benchmark protocol (BENCHMARK.md) and the dataset fingerprint.

A pure function of the dataset: by time per user, the last interaction is the test target, the
second-to-last the validation target, the rest is train. Every method sees the same split.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from dataio.dataset import Dataset, DatasetError

logger = logging.getLogger(__name__)

MIN_INTERACTIONS = 3

Which = Literal["valid", "test"]


@dataclass(frozen=True)
class Split:
    """Leave-one-out split: valid/test hold one row per evaluated user, train the rest."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    dropped_users: int

    def targets(self, which: Which) -> pd.DataFrame:
        """The valid or test rows (one per evaluated user)."""
        if which not in ("valid", "test"):
            raise ValueError(f"which must be 'valid' or 'test', not {which!r}")
        return self.valid if which == "valid" else self.test


def split_leave_one_out(ds: Dataset, min_interactions: int = MIN_INTERACTIONS) -> Split:
    """Per user by time (ties by original order): last -> test, second-to-last -> valid.

    Users with fewer than ``min_interactions`` (at least 3) interactions are left out entirely.
    """
    if min_interactions < MIN_INTERACTIONS:
        raise ValueError(
            f"min_interactions must be at least {MIN_INTERACTIONS} (train, valid and test each "
            f"need an interaction), not {min_interactions}"
        )
    frame = ds.interactions.reset_index(drop=True)
    order = np.lexsort((np.arange(len(frame)), frame["ts"].to_numpy(), frame["user"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    users = frame["user"]
    counts = users.map(users.value_counts())
    from_end = frame.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    kept = (counts >= min_interactions).to_numpy()
    dropped = int(users[~kept].nunique())
    if dropped:
        logger.info(
            "%s: left out %d users with fewer than %d interactions",
            ds.name,
            dropped,
            min_interactions,
        )
    if not kept.any():
        raise DatasetError(
            f"{ds.name}: no user has at least {min_interactions} interactions, so there is "
            "nothing to evaluate; the protocol needs train, valid and test items per user"
        )
    return Split(
        train=frame[kept & (from_end >= 2)].reset_index(drop=True),
        valid=frame[kept & (from_end == 1)].reset_index(drop=True),
        test=frame[kept & (from_end == 0)].reset_index(drop=True),
        dropped_users=dropped,
    )


def dataset_fingerprint(ds: Dataset) -> str:
    """Short sha256 over the name, sizes, ids and interaction arrays of a dataset."""
    digest = hashlib.sha256()
    digest.update(f"{ds.name}\x1f{ds.n_users}\x1f{ds.n_items}".encode())
    digest.update("\x1f".join(ds.user_ids).encode())
    digest.update(b"\x1e")
    digest.update("\x1f".join(ds.item_ids).encode())
    for column in ("user", "item", "ts"):
        array = np.ascontiguousarray(ds.interactions[column].to_numpy(dtype="<i8"))
        digest.update(array.tobytes())
    if ds.requests or ds.fixed_candidates:  # only datasets that have them: others keep theirs
        extra = json.dumps([ds.requests, ds.fixed_candidates], sort_keys=True)
        digest.update(extra.encode())
    return digest.hexdigest()[:16]
