"""``load_dataset``: one entry point for the known datasets and the generic format.

``load_dataset(name_or_path)`` reads one of the known benchmark datasets from the data directory
(``ml-100k``, ``amazon-scientific``, ``amazon-games``; ``dataio/known.py``) or a folder in the
**generic format** (``dataio/generic.py``) into a :class:`Dataset` (``dataio/dataset.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dataio.dataset import GENERIC_FORMAT, KNOWN_DATASETS, Dataset, DatasetError
from dataio.generic import load_generic
from dataio.known import load_amazon_games, load_amazon_scientific, load_ml100k
from dataio.paths import resolve_data_dir

__all__ = ["GENERIC_FORMAT", "KNOWN_DATASETS", "Dataset", "DatasetError", "load_dataset"]


def load_dataset(name_or_path: str, data_dir: Path | str | None = None) -> Dataset:
    """Load a known dataset from ``<data_dir>/<name>/`` or a folder in the generic format."""
    if name_or_path in KNOWN_DATASETS:
        folder = resolve_data_dir(data_dir) / name_or_path
        if not folder.is_dir():
            raise DatasetError(
                f"dataset {name_or_path!r} not found: {folder} is not a folder. Point the data "
                f"directory (--data-dir or MEMREC_DATA_DIR) at the folder that contains "
                f"{name_or_path}/, or download it (ml-100k downloads automatically)."
            )
        return _KNOWN_LOADERS[name_or_path](folder)
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return load_generic(folder)
    raise DatasetError(
        f"unknown dataset {name_or_path!r}: it is neither a known dataset "
        f"({', '.join(KNOWN_DATASETS)}) nor a folder. Give a known name or {GENERIC_FORMAT}."
    )


_KNOWN_LOADERS: dict[str, Callable[[Path], Dataset]] = {
    "ml-100k": load_ml100k,
    "amazon-scientific": load_amazon_scientific,
    "amazon-games": load_amazon_games,
}
