"""The catalog snapshot of a store: the dataset and its split, pickled at index time.

Later opens skip parsing the raw files. Snapshots written before the modules moved
(``memory_store.datasets``, ``evaluation.protocol``) still load: their class paths are mapped to
the current ones.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from dataio.dataset import Dataset
from dataio.files import atomic_write_with
from dataio.split import Split

# Where the pickled classes lived before the layered layout (stores indexed by older versions).
_MOVED = {
    ("memory_store.datasets", "Dataset"): Dataset,
    ("evaluation.protocol", "Split"): Split,
}


class _Unpickler(pickle.Unpickler):
    """Reads snapshots of every version of the layout (see ``_MOVED``)."""

    def find_class(self, module: str, name: str) -> Any:
        moved = _MOVED.get((module, name))
        return moved if moved is not None else super().find_class(module, name)


def load_catalog(directory: Path) -> tuple[Dataset, Split]:
    """The dataset and split snapshot written at index time."""
    with open(directory / "catalog.pkl", "rb") as fh:
        dataset, split = _Unpickler(fh).load()
    return dataset, split


def save_catalog(directory: Path, dataset: Dataset, split: Split) -> Path:
    """Snapshot the dataset and split (atomically) so later opens skip parsing the raw files."""
    path = directory / "catalog.pkl"
    atomic_write_with(
        path, lambda fh: pickle.dump((dataset, split), fh, protocol=pickle.HIGHEST_PROTOCOL)
    )
    return path
