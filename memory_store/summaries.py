"""Deterministic memory texts: the offline warm-up summary of a user and its re-summary.

A user memory reads like a short profile a language model would write: the attributes the user
returns to, representative and recent titles. It is built from the user's own history only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

MAX_TITLES = 5
MAX_ATTRIBUTES = 6


def user_summary(
    titles: Sequence[str],
    attributes: Sequence[Sequence[str]],
    *,
    notes: Sequence[str] = (),
) -> str:
    """Profile text from a user's items, oldest first, plus collaborative notes kept from before."""
    if not titles:
        return "New user: no interactions yet."
    counts = Counter(a for attrs in attributes for a in dict.fromkeys(attrs))
    n = len(titles)
    top = [f"{a} ({100 * c // n}%)" for a, c in counts.most_common(MAX_ATTRIBUTES)]
    recent = list(reversed(titles[-MAX_TITLES:]))
    parts = [f"Interacted with {n} items."]
    if top:
        parts.append("Returns to: " + ", ".join(top) + ".")
    parts.append("Recently: " + "; ".join(recent) + ".")
    if n > MAX_TITLES:
        earlier = titles[: n - MAX_TITLES]
        step = max(1, len(earlier) // 3)
        parts.append("Earlier favourites: " + "; ".join(earlier[::step][:3]) + ".")
    parts.extend(notes)
    return " ".join(parts)


def append_note(text: str, note: str, *, max_notes: int = 4, marker: str = "Note:") -> str:
    """Add a collaborative note to a memory, keeping only the latest ``max_notes`` notes."""
    head, *notes = text.split(f" {marker} ")
    kept = [n for n in notes if n.strip() and n.strip() != note.strip()][-(max_notes - 1) :]
    return " ".join([head, *(f"{marker} {n}" for n in [*kept, note])])


def notes_of(text: str, marker: str = "Note:") -> list[str]:
    """The collaborative notes carried by a memory (to keep them across a re-summary)."""
    return [f"{marker} {n}" for n in text.split(f" {marker} ")[1:]]
