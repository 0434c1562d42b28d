"""Removing deleted users from a dataset, its split and its protocol files, codes kept stable.

A deleted user keeps their code (the graph, the vectors and every other user's code stay valid)
but their id is replaced by a placeholder and their interactions leave the dataset and the split.
Index builds apply the same redaction to the source data, so a re-index never brings a deleted
user back. Candidate lists and user samples are rewritten without the user and with the new
dataset fingerprint (the other users' lists are unchanged: each is seeded by its own user id).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dataio.dataset import Dataset
from dataio.files import atomic_write_text
from dataio.split import Split, dataset_fingerprint

PROTOCOL_GLOBS = ("candidates-*.json", "users-n*-s*.json")


def redact_dataset(ds: Dataset, placeholders: Mapping[int, str]) -> Dataset:
    """A copy of ``ds`` where each user code in ``placeholders`` has that id and no interactions."""
    if not placeholders:
        return ds
    user_ids = list(ds.user_ids)
    for code, placeholder in placeholders.items():
        user_ids[code] = placeholder
    keep = ~ds.interactions["user"].isin(list(placeholders)).to_numpy()
    frame = ds.interactions[keep].reset_index(drop=True)
    return dataclasses.replace(ds, user_ids=user_ids, interactions=frame)


def redact_split(split: Split, codes: set[int]) -> Split:
    """The split without the rows of ``codes`` (the other users' rows are unchanged)."""
    if not codes:
        return split

    def drop(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[~frame["user"].isin(list(codes))].reset_index(drop=True)

    return dataclasses.replace(
        split, train=drop(split.train), valid=drop(split.valid), test=drop(split.test)
    )


def redact_protocol_files(store_dir: Path, ds: Dataset, removed_ids: set[str]) -> list[Path]:
    """Rewrite candidate and sample files without ``removed_ids``; returns the files rewritten."""
    fingerprint = dataset_fingerprint(ds)
    rewritten = []
    for pattern in PROTOCOL_GLOBS:
        for path in sorted(Path(store_dir).glob(pattern)):
            raw = json.loads(path.read_text(encoding="utf-8"))
            users = raw.get("users")
            if isinstance(users, dict):
                raw["users"] = {u: v for u, v in users.items() if u not in removed_ids}
            elif isinstance(users, list):
                raw["users"] = [u for u in users if u not in removed_ids]
            raw["fingerprint"] = fingerprint
            atomic_write_text(path, json.dumps(raw, ensure_ascii=False))
            rewritten.append(path)
    return rewritten
