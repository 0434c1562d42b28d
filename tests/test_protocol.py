"""The benchmark protocol: leave-one-out split, candidate files and user samples."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dataio import candidates as protocol
from dataio.candidates import (
    ProtocolError,
    candidate_rng,
    candidates_path,
    ensure_candidates,
    ensure_user_sample,
    make_candidates,
    read_candidates,
    read_user_sample,
    sample_path,
    sample_users,
    write_candidates,
    write_user_sample,
)
from dataio.datasets import Dataset, DatasetError, load_dataset
from dataio.split import Split, dataset_fingerprint, split_leave_one_out

DATA_DIR = Path(
    os.environ.get("MEMREC_DATA_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
_skip_without_data = pytest.mark.skipif(
    not (DATA_DIR / "ml-100k" / "u.data").is_file(), reason=f"benchmark data not at {DATA_DIR}"
)


def needs_data(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test of the benchmark data: the slow lane, skipped when the data is absent."""
    return pytest.mark.slow(_skip_without_data(test))


def tiny_dataset(
    rows: list[tuple[int, int, int]], n_items: int = 30, name: str = "tiny"
) -> Dataset:
    """Rows of (user, item, ts) in their original order; sorted the way loaders sort them."""
    frame = pd.DataFrame(rows, columns=["user", "item", "ts"]).astype("int64")
    frame["rating"] = np.nan
    frame = frame.sort_values(["user", "ts"], kind="stable").reset_index(drop=True)
    n_users = int(frame["user"].max()) + 1
    return Dataset(
        name=name,
        interactions=frame,
        user_ids=[f"u{u}" for u in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
        item_titles=[f"title {i}" for i in range(n_items)],
        item_texts=[f"text {i}" for i in range(n_items)],
    )


# user 0: five items, ts tie between items 3 and 4 (original order decides: 3 then 4)
# user 1: two items (dropped); user 2: exactly three items; user 3: one item (dropped)
TINY_ROWS = [
    (0, 1, 10),
    (0, 2, 20),
    (0, 5, 5),
    (0, 3, 30),
    (0, 4, 30),
    (1, 7, 1),
    (1, 8, 2),
    (2, 9, 3),
    (2, 10, 1),
    (2, 11, 2),
    (3, 12, 1),
]


@pytest.fixture(scope="module")
def ml100k() -> Dataset:
    if not (DATA_DIR / "ml-100k" / "u.data").is_file():
        pytest.skip(f"benchmark data not at {DATA_DIR}")
    return load_dataset("ml-100k", DATA_DIR)


@pytest.fixture(scope="module")
def ml_split(ml100k: Dataset) -> Split:
    return split_leave_one_out(ml100k)


# ----------------------------------------------------------------------------------- split


def test_split_tiny_by_time_with_ties_and_drops() -> None:
    split = split_leave_one_out(tiny_dataset(TINY_ROWS))
    assert split.dropped_users == 2
    assert split.test[["user", "item"]].values.tolist() == [[0, 4], [2, 9]]
    assert split.valid[["user", "item"]].values.tolist() == [[0, 3], [2, 11]]
    assert split.train[["user", "item"]].values.tolist() == [[0, 5], [0, 1], [0, 2], [2, 10]]
    assert list(split.test.columns) == ["user", "item", "ts", "rating"]


def test_split_rejects_datasets_without_evaluable_users() -> None:
    with pytest.raises(DatasetError, match="no user has at least 3 interactions"):
        split_leave_one_out(tiny_dataset([(0, 1, 1), (0, 2, 2), (1, 3, 1)]))
    with pytest.raises(ValueError, match="at least 3"):
        split_leave_one_out(tiny_dataset(TINY_ROWS), min_interactions=2)


def test_split_min_interactions_raises_the_bar() -> None:
    split = split_leave_one_out(tiny_dataset(TINY_ROWS), min_interactions=4)
    assert split.test["user"].tolist() == [0] and split.dropped_users == 3


@needs_data
def test_split_properties_on_ml100k(ml100k: Dataset, ml_split: Split) -> None:
    train, valid, test = ml_split.train, ml_split.valid, ml_split.test
    assert len(valid) == len(test) == 943 and ml_split.dropped_users == 0
    assert len(train) + len(valid) + len(test) == len(ml100k.interactions)
    assert test["user"].is_unique and valid["user"].is_unique
    last_ts = ml100k.interactions.groupby("user")["ts"].max()
    assert (test.set_index("user")["ts"] == last_ts).all()
    assert (valid.set_index("user")["ts"] <= test.set_index("user")["ts"]).all()
    assert (train.groupby("user")["ts"].max() <= valid.set_index("user")["ts"]).all()
    pairs = set(zip(train["user"], train["item"], strict=True))
    for held_out in (valid, test):
        assert not pairs & set(zip(held_out["user"], held_out["item"], strict=True))


# ------------------------------------------------------------------------------ candidates


def test_candidate_rng_is_pinned() -> None:
    # sha256-seeded, so the stream never depends on the process (hash randomisation) or platform.
    draw = candidate_rng("ml-100k", "1", "test", 0).integers(0, 1000, size=5).tolist()
    assert draw == [766, 690, 771, 923, 729]
    assert candidate_rng("ml-100k", "1", "test", 0).integers(0, 1000, size=5).tolist() == draw
    assert candidate_rng("ml-100k", "1", "valid", 0).integers(0, 1000, size=5).tolist() != draw
    assert candidate_rng("ml-100k", "2", "test", 0).integers(0, 1000, size=5).tolist() != draw


@needs_data
@pytest.mark.parametrize("n", [10, 20])
def test_candidates_properties(ml100k: Dataset, ml_split: Split, n: int) -> None:
    cands = make_candidates(ml100k, ml_split, "test", n=n, seed=0)
    targets = dict(zip(ml_split.test["user"], ml_split.test["item"], strict=True))
    assert set(cands) == set(targets)
    history = ml100k.interactions.groupby("user")["item"].agg(set)
    first_positions = []
    for user, items in cands.items():
        assert len(items) == n and len(set(items)) == n
        assert items.count(targets[user]) == 1
        assert not (set(items) - {targets[user]}) & history[user]
        first_positions.append(items.index(targets[user]))
    # shuffled: the target is not parked in one position
    assert len(set(first_positions)) == n


@needs_data
def test_candidates_deterministic_and_seed_dependent(ml100k: Dataset, ml_split: Split) -> None:
    first = make_candidates(ml100k, ml_split, "test", n=10, seed=0)
    assert make_candidates(ml100k, ml_split, "test", n=10, seed=0) == first
    other_seed = make_candidates(ml100k, ml_split, "test", n=10, seed=1)
    assert sum(first[u] != other_seed[u] for u in first) > 0.9 * len(first)
    valid = make_candidates(ml100k, ml_split, "valid", n=10, seed=0)
    targets = dict(zip(ml_split.valid["user"], ml_split.valid["item"], strict=True))
    assert all(targets[u] in items for u, items in valid.items())


def test_candidates_need_enough_unseen_items() -> None:
    ds = tiny_dataset(TINY_ROWS, n_items=13)  # user 0 has seen 5 of 13 items: 8 unseen
    split = split_leave_one_out(ds)
    assert len(make_candidates(ds, split, n=9)[0]) == 9
    with pytest.raises(ProtocolError, match="fewer than the 9 negatives"):
        make_candidates(ds, split, n=10)


@needs_data
def test_candidate_file_roundtrip(tmp_path: Path, ml100k: Dataset, ml_split: Split) -> None:
    cands = make_candidates(ml100k, ml_split, "test", n=10, seed=3)
    path = candidates_path(tmp_path, "test", 10, 3)
    assert path.name == "candidates-test-n10-s3.json"
    write_candidates(path, ml100k, cands, "test", 10, 3)
    raw = json.loads(path.read_text())
    assert raw["format_version"] == 1 and raw["dataset"] == "ml-100k"
    assert raw["fingerprint"] == dataset_fingerprint(ml100k)
    user = ml100k.user_ids[0]
    assert raw["users"][user] == [ml100k.item_ids[i] for i in cands[0]]
    loaded = read_candidates(path, ml100k)
    assert (loaded.which, loaded.n, loaded.seed) == ("test", 10, 3)
    assert loaded.users == cands


def rewrite(path: Path, **changes: object) -> None:
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def test_candidate_file_from_another_dataset_is_rejected(tmp_path: Path) -> None:
    ds = tiny_dataset(TINY_ROWS)
    split = split_leave_one_out(ds)
    path = candidates_path(tmp_path, "test", 10, 0)
    write_candidates(path, ds, make_candidates(ds, split), "test", 10, 0)
    other = tiny_dataset(TINY_ROWS, name="other")
    with pytest.raises(ProtocolError, match="written for dataset 'tiny', not 'other'"):
        read_candidates(path, other)
    changed = tiny_dataset([*TINY_ROWS, (3, 13, 2)])  # same name, different data
    with pytest.raises(ProtocolError, match="another version of 'tiny'.*delete it"):
        read_candidates(path, changed)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 0}, "format_version 0; this version reads 1"),
        ({"users": {"u0": ["i1", "i2"]}}, "expected 10 distinct items"),
        ({"users": {"nobody": ["i1"] * 10}}, "unknown user id"),
        ({"users": {"u0": [f"x{i}" for i in range(10)]}}, "unknown item id"),
    ],
)
def test_candidate_file_bad_contents(tmp_path: Path, changes: dict, message: str) -> None:
    ds = tiny_dataset(TINY_ROWS)
    path = tmp_path / "c.json"
    write_candidates(path, ds, make_candidates(ds, split_leave_one_out(ds)), "test", 10, 0)
    rewrite(path, **changes)
    with pytest.raises(ProtocolError, match=message):
        read_candidates(path, ds)


def test_candidate_file_not_json(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(ProtocolError, match="not a JSON protocol file"):
        read_candidates(path, tiny_dataset(TINY_ROWS))


def test_ensure_candidates_writes_once_then_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = tiny_dataset(TINY_ROWS)
    split = split_leave_one_out(ds)
    first = ensure_candidates(tmp_path, ds, split, "test", 10, 0)
    assert first.users == make_candidates(ds, split, "test", 10, 0)
    assert candidates_path(tmp_path, "test", 10, 0).is_file()

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("candidates regenerated although the file exists")

    monkeypatch.setattr(protocol, "make_candidates", must_not_run)
    assert ensure_candidates(tmp_path, ds, split, "test", 10, 0).users == first.users


def test_ensure_candidates_rejects_a_file_for_another_split(tmp_path: Path) -> None:
    ds = tiny_dataset(TINY_ROWS)
    split = split_leave_one_out(ds)
    ensure_candidates(tmp_path, ds, split, "test", 10, 0)
    narrower = split_leave_one_out(ds, min_interactions=4)
    with pytest.raises(ProtocolError, match="does not match the current split"):
        ensure_candidates(tmp_path, ds, narrower, "test", 10, 0)


@needs_data
def test_amazon_games_split_and_candidates_are_fast() -> None:
    ds = load_dataset("amazon-games", DATA_DIR)
    start = time.perf_counter()
    split = split_leave_one_out(ds)
    cands = make_candidates(ds, split, "test", n=10, seed=0)
    elapsed = time.perf_counter() - start
    # About 3 s on one idle core; the bound is loose so a busy CI machine does not flake.
    assert elapsed < 30, f"split + candidates took {elapsed:.1f} s"
    assert len(cands) == 50_546 == len(split.test)
    users = ds.interactions["user"].to_numpy()
    items = ds.interactions["item"].to_numpy()
    target = dict(zip(split.test["user"], split.test["item"], strict=True))
    for user in list(cands)[:: len(cands) // 200]:
        lo, hi = np.searchsorted(users, [user, user + 1])
        negatives = set(cands[user]) - {target[user]}
        assert len(cands[user]) == 10 and len(negatives) == 9
        assert not negatives & set(items[lo:hi].tolist())


# ---------------------------------------------------------------------------- user samples


def test_sample_users_fixed_nested_and_all_when_large() -> None:
    split = Split(
        train=pd.DataFrame(),
        valid=pd.DataFrame(),
        test=pd.DataFrame({"user": np.arange(100)[::-1], "item": 0, "ts": 0, "rating": np.nan}),
        dropped_users=0,
    )
    assert sample_users(split, 1000) == list(range(100))
    small, large = sample_users(split, 10, seed=4), sample_users(split, 30, seed=4)
    assert len(small) == 10 and small == sorted(small) and set(small) <= set(large)
    assert sample_users(split, 10, seed=4) == small
    assert sample_users(split, 10, seed=5) != small
    with pytest.raises(ValueError, match="positive"):
        sample_users(split, 0)


def test_user_sample_file_roundtrip_and_rejection(tmp_path: Path) -> None:
    ds = tiny_dataset(TINY_ROWS)
    split = split_leave_one_out(ds)
    path = sample_path(tmp_path, 1, 0)
    assert path.name == "users-n1-s0.json"
    users = ensure_user_sample(tmp_path, ds, split, 1, 0)
    assert len(users) == 1 and users[0] in (0, 2)
    assert read_user_sample(path, ds).users == users
    write_user_sample(tmp_path / "all.json", ds, [0, 2], seed=0)
    assert read_user_sample(tmp_path / "all.json", ds).users == [0, 2]
    with pytest.raises(ProtocolError, match="not 'other'"):
        read_user_sample(path, replace(ds, name="other"))
