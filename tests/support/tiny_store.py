"""A small generic-format dataset written on the fly, with ids a user may choose (spaces, quotes).

The unit lane of this project's crash-safety, deletion and doctor tests indexes it in a couple of
seconds; ``marker_user`` puts a marker string in one user's id so a test can grep for it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

GENRES = ("action", "drama", "comedy", "horror", "romance", "sci-fi", "family")


def write_dataset(
    folder: Path,
    *,
    n_users: int = 30,
    n_items: int = 60,
    per_user: int = 10,
    user_ids: dict[int, str] | None = None,
    seed: int = 3,
) -> Path:
    """Write interactions.csv and items.csv; ``user_ids`` renames some users (by number)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    names = user_ids or {}
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["item_id", "title", "description", "genres"])
        for i in range(n_items):
            genres = "|".join(rng.sample(GENRES, 2))
            writer.writerow([f"i{i}", f"Film number {i}", f"The story of film {i}.", genres])
    with open(folder / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "timestamp"])
        for u in range(n_users):
            for ts, i in enumerate(rng.sample(range(n_items), per_user)):
                writer.writerow([names.get(u, f"u{u}"), f"i{i}", 1_000_000 + 100 * u + ts])
    return folder
