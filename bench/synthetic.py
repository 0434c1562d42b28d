"""Synthetic datasets in the generic format (``interactions.csv`` + ``items.csv``), made with numpy.

``power_law_dataset`` draws a long-tailed graph of about ``n`` interactions (20 per user and 50 per
item on average, so users and items grow with ``n``); ``degree_dataset`` adds users of exactly the
requested train degrees to a small background graph. See ``dataio/datasets.py`` for the
format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

GENRES = [f"genre{g:02d}" for g in range(20)]
WORDS = [
    "red", "quiet", "iron", "lost", "bright", "silver", "wild", "last", "hidden", "golden",
    "river", "night", "garden", "empire", "signal", "harbor", "winter", "machine", "echo", "atlas",
]  # fmt: skip


def write_items(folder: Path, n_items: int, rng: np.random.Generator) -> None:
    """``items.csv`` with a varied title and 1-3 genres per item."""
    first = rng.integers(0, len(WORDS), n_items)
    second = rng.integers(0, len(WORDS), n_items)
    genre_a = rng.integers(0, len(GENRES), n_items)
    genre_b = rng.integers(0, len(GENRES), n_items)
    titles = [
        f"The {WORDS[a]} {WORDS[b]} {i}" for i, (a, b) in enumerate(zip(first, second, strict=True))
    ]
    genres = [
        GENRES[a] if a == b else f"{GENRES[a]}|{GENRES[b]}"
        for a, b in zip(genre_a, genre_b, strict=True)
    ]
    frame = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "title": titles})
    frame["genres"] = genres
    frame.to_csv(folder / "items.csv", index=False)


def write_interactions(folder: Path, users: np.ndarray, items: np.ndarray, ts: np.ndarray) -> int:
    """``interactions.csv`` (user ids ``u<n>``, item ids ``i<n>``); returns the row count."""
    frame = pd.DataFrame(
        {
            "user_id": np.char.add("u", users.astype(str)),
            "item_id": np.char.add("i", items.astype(str)),
            "timestamp": ts.astype(np.int64),
        }
    )
    frame.to_csv(folder / "interactions.csv", index=False)
    return len(frame)


def _popularity(n_items: int) -> np.ndarray:
    weights = 1.0 / np.power(np.arange(n_items) + 10.0, 0.9)
    return weights / weights.sum()


def power_law_dataset(folder: Path, n: int, seed: int = 0) -> dict[str, int]:
    """About ``n`` unique interactions, long-tailed user degrees and item popularity."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_users, n_items = max(50, n // 20), max(50, n // 50)
    degrees = np.clip(rng.lognormal(np.log(12.0), 1.0, n_users), 3, n_items // 2)
    degrees = np.maximum(3, np.round(degrees * (1.12 * n / degrees.sum()))).astype(np.int64)
    users = np.repeat(np.arange(n_users), degrees)
    items = rng.choice(n_items, size=len(users), p=_popularity(n_items))
    _, first = np.unique(users * n_items + items, return_index=True)
    keep = np.sort(rng.permutation(first)[:n]) if len(first) > n else np.sort(first)
    users, items = users[keep], items[keep]
    ts = 1_000_000_000 + np.arange(len(users)) * 60 + rng.integers(0, 60, len(users))
    rows = write_interactions(folder, users, items, ts)
    write_items(folder, n_items, rng)
    return {"users": n_users, "items": n_items, "interactions": rows}


def degree_dataset(
    folder: Path,
    degrees: list[int],
    background_users: int = 300,
    background_degree: int = 20,
    seed: int = 0,
) -> dict[str, str]:
    """A background graph plus one user per degree; returns degree -> user id.

    Each such user gets ``degree + 2`` interactions, so after the leave-one-out split (last item
    test, second-to-last validation) its train degree is exactly ``degree``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_items = max(200, max(degrees) + 500)
    popularity = _popularity(n_items)
    user_parts, item_parts = [], []
    for u in range(background_users):
        user_parts.append(np.full(background_degree, u))
        item_parts.append(rng.choice(n_items, background_degree, replace=False, p=popularity))
    chosen: dict[str, str] = {}
    for n, degree in enumerate(degrees):
        u = background_users + n
        user_parts.append(np.full(degree + 2, u))
        item_parts.append(rng.choice(n_items, degree + 2, replace=False))
        chosen[str(degree)] = f"u{u}"
    users, items = np.concatenate(user_parts), np.concatenate(item_parts)
    ts = 1_000_000_000 + np.arange(len(users)) * 60
    write_interactions(folder, users, items, ts)
    write_items(folder, n_items, rng)
    return chosen
