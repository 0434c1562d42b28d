"""Where MemRec reads data and keeps its state: one place for every default location.

The data directory holds the benchmark datasets (read-only for us); the home directory holds
everything MemRec writes (one store folder per dataset: memories, rules, candidate files).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

KNOWN_DATASETS = ("ml-100k", "amazon-scientific", "amazon-games")
DATA_DIR_ENV = "MEMREC_DATA_DIR"
HOME_ENV = "MEMREC_HOME"
DEFAULT_DATA_DIR = Path("data")
DEFAULT_HOME = Path(".memrec")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def resolve_data_dir(value: str | Path | None = None) -> Path:
    """Data directory: the explicit value, else ``$MEMREC_DATA_DIR``, else ``./data``."""
    return _resolve(value, DATA_DIR_ENV, DEFAULT_DATA_DIR)


def resolve_home(value: str | Path | None = None) -> Path:
    """Where MemRec writes its state: explicit value, else ``$MEMREC_HOME``, else ``./.memrec``."""
    return _resolve(value, HOME_ENV, DEFAULT_HOME)


def store_dir(dataset_name: str, home: str | Path | None = None) -> Path:
    """Folder holding one dataset's state: ``<home>/stores/<safe name>``.

    ``dataset_name`` is what the user passed to ``load_dataset``: a known dataset name, or a
    folder path in the generic format. A folder gets its folder name plus a short hash of its
    absolute path, so two different folders called ``data`` never share a store.
    """
    return resolve_home(home) / "stores" / _store_name(dataset_name)


def safe_name(name: str) -> str:
    """A file-system-safe version of ``name`` (letters, digits, ``.``, ``_``, ``-``)."""
    cleaned = _UNSAFE.sub("_", name).strip("._")
    return cleaned or "dataset"


def _resolve(value: str | Path | None, env: str, default: Path) -> Path:
    if value is not None and str(value) != "":
        return Path(value).expanduser()
    from_env = os.environ.get(env, "")
    if from_env:
        return Path(from_env).expanduser()
    return default


def _store_name(dataset_name: str) -> str:
    if not _looks_like_folder(dataset_name):
        return safe_name(dataset_name)
    folder = Path(dataset_name).expanduser().resolve()
    digest = hashlib.sha256(str(folder).encode("utf-8")).hexdigest()[:8]
    return f"{safe_name(folder.name)}-{digest}"


def _looks_like_folder(dataset_name: str) -> bool:
    if dataset_name in KNOWN_DATASETS:
        return False
    has_separator = "/" in dataset_name or "\\" in dataset_name or os.sep in dataset_name
    return has_separator or dataset_name in {".", ".."} or Path(dataset_name).expanduser().is_dir()
