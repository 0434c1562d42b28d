"""Indexed stores for tests: the tiny synthetic catalogue (unit lane) or ml-100k (slow lane).

``tests/data/tiny-movies`` (40 users, 100 movies, generic format, committed) indexes in seconds and
needs nothing outside the repository; ml-100k comes from the benchmark data (``MEMREC_DATA_DIR``,
default ``../shared/data``) and its tests skip with a one-line reason when it is absent. Each index
is built once per process in a temporary folder; each test gets an isolated clone of it (in-memory
memories, a fresh event log), registered so that graphs find it through
``MemRecContext(dataset=<dataset>, home=<the test's tmp_path>)``.

A test module picks its dataset with ``ws, ctx = workspace_fixtures(TINY_MOVIES)`` (or
``ML100K``, the default ``ws`` / ``ctx``); tests using the ml-100k ones are in the slow lane.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory_store.workspace import Workspace, open_workspace, register_workspace
from schemas.context import MemRecContext

ML100K = "ml-100k"
TINY_MOVIES = str(Path(__file__).resolve().parents[1] / "data" / "tiny-movies")
DATASET = ML100K  # the default of the helpers below (modules written for ml-100k)


def data_dir() -> Path:
    """The shared, read-only benchmark data."""
    env = os.environ.get("MEMREC_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def has_data(dataset: str = ML100K) -> bool:
    """Whether a dataset's files are here (a generic-format folder always is)."""
    return Path(dataset).is_dir() or (data_dir() / dataset).is_dir()


def no_data_reason(dataset: str = ML100K) -> str:
    """The one-line reason a test that needs the benchmark data is skipped."""
    return f"benchmark data not found at {data_dir() / dataset} (set MEMREC_DATA_DIR)"


needs_data = pytest.mark.skipif(not has_data(ML100K), reason=no_data_reason(ML100K))


@functools.cache
def _indexed_home(dataset: str) -> Path:
    from services.index import build_index

    home = Path(tempfile.mkdtemp(prefix="memrec-test-"))
    atexit.register(shutil.rmtree, home, True)
    build_index(dataset, data_dir=data_dir(), home=home)
    return home


def indexed_home(dataset: str = DATASET) -> Path:
    """A home folder holding an indexed store of ``dataset`` (built once per process)."""
    if not has_data(dataset):
        pytest.skip(no_data_reason(dataset))
    return _indexed_home(dataset)


@functools.cache
def _base_workspace(dataset: str) -> Workspace:
    return open_workspace(dataset, home=indexed_home(dataset))


def base_workspace(dataset: str = DATASET) -> Workspace:
    """The indexed store opened once (read-only for tests: they work on clones)."""
    if not has_data(dataset):
        pytest.skip(no_data_reason(dataset))
    return _base_workspace(dataset)


def copy_store(target_home: Path, dataset: str = DATASET) -> Path:
    """A full on-disk copy of the indexed store (Chroma included) under ``target_home``.

    The copy gets a fresh, empty event log (the manifest records that the store has one).
    """
    from memory_store.events import EventLog

    src = indexed_home(dataset) / "stores"
    dst = target_home / "stores"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("events.sqlite*", "writer.lock"))
    for store in dst.iterdir():
        EventLog(store / "events.sqlite").close()
    return target_home


def workspace_fixtures(dataset: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The ``ws`` and ``ctx`` fixtures of one dataset (assign both in the test module)."""

    def ws(tmp_path: Path) -> Iterator[Workspace]:
        """An isolated clone of the indexed store, registered for ``home=str(tmp_path)``."""
        workspace = base_workspace(dataset).clone(tmp_path / "clone")
        register_workspace(workspace, dataset, home=str(tmp_path))
        yield workspace
        workspace.events.close()

    def ctx(tmp_path: Path) -> MemRecContext:
        """An offline run context pointing at the ``ws`` fixture's registration."""
        return MemRecContext(
            dataset=dataset, home=str(tmp_path), roles="offline", lmmem="offline", llmrec="offline"
        )

    for fn in (ws, ctx):  # tests/conftest.py puts the tests using them in the slow lane
        fn.needs_benchmark_data = not Path(dataset).is_dir()  # type: ignore[attr-defined]
    return pytest.fixture(ws), pytest.fixture(ctx)


ws, ctx = workspace_fixtures(ML100K)
