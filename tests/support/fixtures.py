"""Shared fixtures for the propagation tests: one indexed ml-100k store per test process.

The index is built once per process (about 5-10 s) in a temporary folder; each test gets an
isolated clone of it (in-memory memories, a fresh event log), registered so that graphs find it
through ``MemRecContext(dataset="ml-100k", home=<the test's tmp_path>)``.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory_store.workspace import Workspace, open_workspace, register_workspace
from schemas.context import MemRecContext

DATASET = "ml-100k"


def data_dir() -> Path:
    """The shared, read-only benchmark data."""
    env = os.environ.get("MEMREC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


@functools.cache
def indexed_home() -> Path:
    """A home folder holding an indexed ml-100k store (built once per process)."""
    from services.index import build_index

    home = Path(tempfile.mkdtemp(prefix="memrec-prop-"))
    atexit.register(shutil.rmtree, home, True)
    build_index(DATASET, data_dir=data_dir(), home=home)
    return home


@functools.cache
def base_workspace() -> Workspace:
    """The indexed store opened once (read-only for tests: they work on clones)."""
    return open_workspace(DATASET, home=indexed_home())


def copy_store(target_home: Path) -> Path:
    """A full on-disk copy of the indexed store (Chroma included) under ``target_home``."""
    src = indexed_home() / "stores"
    dst = target_home / "stores"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("events.sqlite*"))
    return target_home


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """An isolated clone of the indexed store, registered for ``home=str(tmp_path)``."""
    workspace = base_workspace().clone(tmp_path / "clone")
    register_workspace(workspace, DATASET, home=str(tmp_path))
    yield workspace
    workspace.events.close()


@pytest.fixture
def ctx(tmp_path: Path) -> MemRecContext:
    """An offline run context pointing at the ``ws`` fixture's registration."""
    return MemRecContext(
        dataset=DATASET, home=str(tmp_path), roles="offline", lmmem="offline", llmrec="offline"
    )
