"""A tiny generic-format film catalogue, written on demand, for fast chat tests (unit lane).

24 films with years and genres, 30 users whose seeded histories lean to a taste each; enough for
curation, retrieval and every chat behaviour, indexed in seconds. Deterministic: the same files
every time, written under the caller's folder (nothing is committed but this script).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

FILMS = [
    ("1", "Star Wars (1977)", "Action|Sci-Fi"),
    ("2", "Alien (1979)", "Horror|Sci-Fi"),
    ("3", "Aliens (1986)", "Action|Sci-Fi"),
    ("4", "Heat (1995)", "Action|Crime"),
    ("5", "Heathers (1989)", "Comedy"),
    ("6", "Godfather, The (1972)", "Crime|Drama"),
    ("7", "Godfather: Part II, The (1974)", "Crime|Drama"),
    ("8", "Twelve Monkeys (1995)", "Sci-Fi|Thriller"),
    ("9", "Some Like It Hot (1959)", "Comedy"),
    ("10", "Apollo 13 (1995)", "Drama"),
    ("11", "Three Colors: Red (1994)", "Drama"),
    ("12", "Pride and Prejudice (1995)", "Drama|Romance"),
    ("13", "Sabrina (1954)", "Comedy|Romance"),
    ("14", "Sabrina (1995)", "Comedy|Romance"),
    ("15", "Toy Story (1995)", "Animation|Children's|Comedy"),
    ("16", "Fargo (1996)", "Crime|Thriller"),
    ("17", "Casablanca (1942)", "Drama|Romance"),
    ("18", "Nosferatu (1922)", "Horror"),
    ("19", "Blade Runner (1982)", "Sci-Fi|Film-Noir"),
    ("20", "Groundhog Day (1993)", "Comedy|Romance"),
    ("21", "Maltese Falcon, The (1941)", "Film-Noir|Mystery"),
    ("22", "Shining, The (1980)", "Horror"),
    ("23", "Lion King, The (1994)", "Animation|Children's"),
    ("24", "Clueless (1995)", "Comedy"),
]
TASTES = ["Sci-Fi", "Comedy", "Drama", "Crime", "Horror", "Romance"]
N_USERS = 30


def write_tiny_films(folder: Path) -> Path:
    """Write ``items.csv`` and ``interactions.csv`` into ``folder`` (created); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(13)
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["item_id", "title", "genres"])
        out.writerows(FILMS)
    rows = []
    for u in range(1, N_USERS + 1):
        taste = TASTES[u % len(TASTES)]
        liked = [f[0] for f in FILMS if taste in f[2]]
        others = [f[0] for f in FILMS if taste not in f[2]]
        seen = rng.sample(liked, min(len(liked), 3)) + rng.sample(others, 3)
        rng.shuffle(seen)
        rows += [(str(u), item, 1000 + 10 * t) for t, item in enumerate(seen)]
    with open(folder / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["user_id", "item_id", "timestamp"])
        out.writerows(rows)
    return folder
