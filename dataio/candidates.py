"""The benchmark protocol's files (docs/BENCHMARK.md): candidate lists and user samples.

Everything here is a pure function of the dataset, its split (``dataio/split.py``) and a seed, so
every method sees the same candidates and the same evaluation users. Candidate lists and user
samples are written to files once (keyed by the dataset fingerprint) and reused by every method.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from dataio.dataset import Dataset
from dataio.files import atomic_write_text
from dataio.split import Split, Which, dataset_fingerprint

logger = logging.getLogger(__name__)

CANDIDATES_FORMAT_VERSION = 1
SAMPLE_FORMAT_VERSION = 1


class ProtocolError(ValueError):
    """A protocol file does not match the dataset or this version: says what and how to fix it."""


def candidate_rng(dataset: str, user_id: str, which: str, seed: int) -> np.random.Generator:
    """Generator seeded from sha256(dataset, user, split, seed): same stream in every process."""
    key = "\x1f".join((dataset, user_id, which, str(seed))).encode()
    words = np.frombuffer(hashlib.sha256(key).digest(), dtype="<u4")
    return np.random.default_rng(words)


def make_candidates(
    ds: Dataset,
    split: Split,
    which: Which = "test",
    n: int = 10,
    seed: int = 0,
    histories: list[set[int]] | None = None,
) -> dict[int, list[int]]:
    """User code -> ``n`` item codes: the target plus ``n-1`` unseen negatives, shuffled.

    ``histories`` (``user_histories(ds)``) can be passed in when several files are made.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 (the target plus one negative), not {n}")
    if which == "test" and ds.fixed_candidates:
        return fixed_candidates(ds, split, n)
    targets = split.targets(which)
    histories = histories if histories is not None else user_histories(ds)
    candidates: dict[int, list[int]] = {}
    for user, target in zip(targets["user"].tolist(), targets["item"].tolist(), strict=True):
        rng = candidate_rng(ds.name, ds.user_ids[user], which, seed)
        seen = histories[user]
        if ds.n_items - len(seen) < n - 1:
            raise ProtocolError(
                f"{ds.name}: user {ds.user_ids[user]!r} has only {ds.n_items - len(seen)} unseen "
                f"items, fewer than the {n - 1} negatives asked for; use a smaller n"
            )
        items = [target, *_draw_negatives(rng, seen, ds.n_items, n - 1)]
        rng.shuffle(items)
        candidates[user] = items
    return candidates


def fixed_candidates(ds: Dataset, split: Split, n: int) -> dict[int, list[int]]:
    """The dataset's own test lists (``candidates.csv``, e.g. InstructRec's ``ranked_lists``).

    Every evaluated user needs one, of ``n`` items, holding their test target; the order is kept.
    """
    targets = split.targets("test")
    out: dict[int, list[int]] = {}
    sizes = {len(items) for items in ds.fixed_candidates.values()}
    if sizes != {n}:
        raise ProtocolError(
            f"{ds.name} ships its own test candidate lists of {sorted(sizes)} items; evaluate "
            f"with that many candidates (--candidates {min(sizes)}), not {n}"
        )
    for user, target in zip(targets["user"].tolist(), targets["item"].tolist(), strict=True):
        user_id = ds.user_ids[user]
        items = ds.fixed_candidates.get(user_id)
        if items is None:
            raise ProtocolError(
                f"{ds.name}: user {user_id!r} has no list in candidates.csv; every user with "
                "3 or more interactions needs one (or remove candidates.csv to sample them)"
            )
        codes = [ds.item_index[i] for i in items]
        if target not in codes:
            raise ProtocolError(
                f"{ds.name}: the candidate list of user {user_id!r} does not hold their last item "
                f"{ds.item_ids[target]!r} (the test target); the list must contain it"
            )
        out[user] = codes
    return out


def user_histories(ds: Dataset) -> list[set[int]]:
    """Every item each user interacted with, over the whole dataset (train, valid and test)."""
    frame = ds.interactions
    order = np.argsort(frame["user"].to_numpy(), kind="stable")
    users = frame["user"].to_numpy()[order]
    items = frame["item"].to_numpy()[order]
    bounds = np.searchsorted(users, np.arange(ds.n_users + 1))
    return [set(items[bounds[u] : bounds[u + 1]].tolist()) for u in range(ds.n_users)]


def _draw_negatives(rng: np.random.Generator, seen: set[int], n_items: int, k: int) -> list[int]:
    """``k`` distinct items outside ``seen``, uniformly without replacement (rejection sampling)."""
    chosen: list[int] = []
    taken: set[int] = set()
    while len(chosen) < k:
        for item in rng.integers(0, n_items, size=2 * k).tolist():
            if item not in seen and item not in taken:
                chosen.append(item)
                taken.add(item)
                if len(chosen) == k:
                    break
    return chosen


class CandidateFile(BaseModel):
    """Candidate lists read back from a file, with user and item codes of the given dataset."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    fingerprint: str
    which: Which
    n: int
    seed: int
    users: dict[int, list[int]]


class _CandidateRecord(BaseModel):
    """On-disk shape of a candidate file (raw ids)."""

    format_version: int
    dataset: str
    fingerprint: str
    which: Which
    n: int
    seed: int
    users: dict[str, list[str]]


def candidates_path(store_dir: Path, which: Which, n: int, seed: int) -> Path:
    """Where a candidate file lives: ``<store>/candidates-<which>-n<n>-s<seed>.json``."""
    return Path(store_dir) / f"candidates-{which}-n{n}-s{seed}.json"


def write_candidates(
    path: Path, ds: Dataset, cands: dict[int, list[int]], which: Which, n: int, seed: int
) -> None:
    """Write candidate lists with raw ids, tagged with the dataset fingerprint."""
    record = _CandidateRecord(
        format_version=CANDIDATES_FORMAT_VERSION,
        dataset=ds.name,
        fingerprint=dataset_fingerprint(ds),
        which=which,
        n=n,
        seed=seed,
        users={
            ds.user_ids[u]: [ds.item_ids[i] for i in items] for u, items in sorted(cands.items())
        },
    )
    _write_json(Path(path), record.model_dump())


def read_candidates(path: Path, ds: Dataset) -> CandidateFile:
    """Read a candidate file written for ``ds``; ``ProtocolError`` if it belongs elsewhere."""
    path = Path(path)
    record = _read_record(path, ds, CANDIDATES_FORMAT_VERSION, _CandidateRecord, "candidate file")
    users = _codes(path, record.users.keys(), ds.user_index, "user")
    lists: dict[int, list[int]] = {}
    for user, (raw_user, items) in zip(users, record.users.items(), strict=True):
        if len(items) != record.n or len(set(items)) != record.n:
            raise ProtocolError(
                f"{path}: user {raw_user!r} has {len(items)} candidates ({len(set(items))} "
                f"distinct), expected {record.n} distinct items"
            )
        lists[user] = _codes(path, items, ds.item_index, "item")
    return CandidateFile(
        dataset=record.dataset,
        fingerprint=record.fingerprint,
        which=record.which,
        n=record.n,
        seed=record.seed,
        users=lists,
    )


def ensure_candidates(
    store_dir: Path,
    ds: Dataset,
    split: Split,
    which: Which = "test",
    n: int = 10,
    seed: int = 0,
    histories: list[set[int]] | None = None,
) -> CandidateFile:
    """Read the candidate file for (which, n, seed) if present, else make and write it once.

    A file made now is returned as made (it is not read back); one found is read and checked.
    """
    path = candidates_path(store_dir, which, n, seed)
    if not path.exists():
        made = make_candidates(ds, split, which, n, seed, histories)
        write_candidates(path, ds, made, which, n, seed)
        logger.info("wrote %s candidate lists to %s", which, path)
        fingerprint = dataset_fingerprint(ds)
        return CandidateFile(
            dataset=ds.name, fingerprint=fingerprint, which=which, n=n, seed=seed, users=made
        )
    loaded = read_candidates(path, ds)
    _check_matches_split(path, loaded, split, which, n, seed)
    return loaded


def _check_matches_split(
    path: Path, loaded: CandidateFile, split: Split, which: Which, n: int, seed: int
) -> None:
    if (loaded.which, loaded.n, loaded.seed) != (which, n, seed):
        raise ProtocolError(
            f"{path} holds which={loaded.which}, n={loaded.n}, seed={loaded.seed}, not "
            f"which={which}, n={n}, seed={seed}; delete it to regenerate"
        )
    targets = split.targets(which)
    expected = dict(zip(targets["user"].tolist(), targets["item"].tolist(), strict=True))
    wrong = [u for u, t in expected.items() if t not in loaded.users.get(u, ())]
    if wrong or len(loaded.users) != len(expected):
        raise ProtocolError(
            f"{path} does not match the current split ({len(loaded.users)} users in the file, "
            f"{len(expected)} evaluated users, {len(wrong)} without their target); "
            "delete it to regenerate"
        )


# ---------------------------------------------------------------------------- user samples


class UserSample(BaseModel):
    """A fixed seeded sample of evaluated users (codes of the given dataset)."""

    model_config = ConfigDict(frozen=True)

    dataset: str
    fingerprint: str
    seed: int
    users: list[int]


class _SampleRecord(BaseModel):
    """On-disk shape of a user sample file (raw ids)."""

    format_version: int
    dataset: str
    fingerprint: str
    seed: int
    users: list[str]


def sample_users(split: Split, n: int, seed: int = 0) -> list[int]:
    """``n`` evaluated users (sorted codes); all of them when ``n`` >= their count.

    The sample is a prefix of one seeded permutation, so a smaller sample is inside a larger one.
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of users, not {n}")
    users = np.sort(split.test["user"].to_numpy())
    if n >= len(users):
        return users.tolist()
    permuted = np.random.default_rng(seed).permutation(users)
    return sorted(permuted[:n].tolist())


def sample_path(store_dir: Path, n: int, seed: int) -> Path:
    """Where a user sample lives: ``<store>/users-n<n>-s<seed>.json``."""
    return Path(store_dir) / f"users-n{n}-s{seed}.json"


def write_user_sample(path: Path, ds: Dataset, users: list[int], seed: int) -> None:
    """Write a user sample with raw ids, tagged with the dataset fingerprint."""
    record = _SampleRecord(
        format_version=SAMPLE_FORMAT_VERSION,
        dataset=ds.name,
        fingerprint=dataset_fingerprint(ds),
        seed=seed,
        users=[ds.user_ids[u] for u in users],
    )
    _write_json(Path(path), record.model_dump())


def read_user_sample(path: Path, ds: Dataset) -> UserSample:
    """Read a user sample written for ``ds``; ``ProtocolError`` if it belongs elsewhere."""
    path = Path(path)
    record = _read_record(path, ds, SAMPLE_FORMAT_VERSION, _SampleRecord, "user sample file")
    users = _codes(path, record.users, ds.user_index, "user")
    return UserSample(
        dataset=record.dataset, fingerprint=record.fingerprint, seed=record.seed, users=users
    )


def ensure_user_sample(
    store_dir: Path, ds: Dataset, split: Split, n: int, seed: int = 0
) -> list[int]:
    """Read the sample file for (n, seed) if present, else draw and write it once."""
    path = sample_path(store_dir, n, seed)
    if not path.exists():
        write_user_sample(path, ds, sample_users(split, n, seed), seed)
        logger.info("wrote a sample of %d users to %s", n, path)
    return read_user_sample(path, ds).users


# ---------------------------------------------------------------------------------- files


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically and durably (temp file, fsync, rename) so no reader sees half a file."""
    atomic_write_text(path, json.dumps(payload, ensure_ascii=False))


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProtocolError(f"missing protocol file {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path} is not a JSON protocol file: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProtocolError(f"{path} is not a JSON object; expected a protocol file")
    return raw


def _check_header(path: Path, raw: dict, ds: Dataset, version: int) -> None:
    found_version = raw.get("format_version")
    if found_version != version:
        raise ProtocolError(
            f"{path} has format_version {found_version!r}; this version reads {version}. "
            "Delete the file to regenerate it"
        )
    if raw.get("dataset") != ds.name:
        raise ProtocolError(
            f"{path} was written for dataset {raw.get('dataset')!r}, not {ds.name!r}; "
            "use the file from this dataset's store or delete it to regenerate"
        )
    fingerprint = dataset_fingerprint(ds)
    if raw.get("fingerprint") != fingerprint:
        raise ProtocolError(
            f"{path} was written for another version of {ds.name!r} (fingerprint "
            f"{raw.get('fingerprint')!r}, the loaded data has {fingerprint!r}); "
            "delete it to regenerate"
        )


def _codes(path: Path, ids: Iterable[str], index: dict[str, int], kind: str) -> list[int]:
    ids = list(ids)
    unknown = [i for i in ids if i not in index]
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5])
        raise ProtocolError(
            f"{path} names {len(unknown)} unknown {kind} id(s) ({shown}); the file does not "
            "belong to the loaded dataset"
        )
    return [index[i] for i in ids]


R = TypeVar("R", bound=BaseModel)


def _read_record(path: Path, ds: Dataset, version: int, model: type[R], what: str) -> R:
    """A JSON record written for ``ds`` in ``version``; ``ProtocolError`` naming ``what`` if not."""
    raw = _read_json(path)
    _check_header(path, raw, ds, version)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(f"{path} is not a valid {what}: {exc}") from exc
