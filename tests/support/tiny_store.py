"""A small generic-format dataset written on the fly, with ids a user may choose (spaces, quotes).

The unit lane of this project's crash-safety, deletion and doctor tests indexes it in a couple of
seconds; ``marker_user`` puts a marker string in one user's id so a test can grep for it.
"""

from __future__ import annotations

import atexit
import csv
import functools
import random
import shutil
import tempfile
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


MARKER = "MRK7f3aQ"  # planted in a user's data by the deletion tests; must vanish everywhere
MARKED_USER = f"carol {MARKER} 'o\"q"  # an id with spaces and both quotes
MARKED_CODE = 3


@functools.cache
def _indexed() -> tuple[Path, Path]:
    from services.index import build_index

    root = Path(tempfile.mkdtemp(prefix="memrec-tiny-"))
    atexit.register(shutil.rmtree, root, True)
    folder = write_dataset(root / "tiny", user_ids={MARKED_CODE: MARKED_USER})
    build_index(str(folder), home=root / "home")
    return folder, root / "home"


def tiny_store(target_home: Path) -> tuple[str, Path]:
    """(dataset, home): a fresh on-disk copy of the indexed tiny store (Chroma included)."""
    folder, home = _indexed()
    shutil.copytree(home, target_home, ignore=shutil.ignore_patterns("writer.lock"))
    return str(folder), target_home


def store_folder(dataset: str, home: Path) -> Path:
    """The store folder of ``dataset`` under ``home``."""
    from dataio.paths import store_dir

    return store_dir(dataset, home)


def grep_tree(root: Path, needle: str) -> list[str]:
    """Files under ``root`` whose bytes contain ``needle`` (UTF-8), as relative paths."""
    raw = needle.encode("utf-8")
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and raw in p.read_bytes()
    )
