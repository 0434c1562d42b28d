"""A throwaway PostgreSQL cluster on 127.0.0.1 (initdb + pg_ctl), for tests and the bench deploy.

``postgres_cluster(root)`` initialises a cluster under ``root``, starts it on a free port and
yields its connection string; it always stops it. ``initdb`` refuses to run as root, so as root
the server tools run as the ``postgres`` user (``runuser``). ``missing_for_postgres()`` names what
is missing (the binaries come with ``apt install postgresql``; ``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.chroma_server import free_port


def pg_tool(name: str) -> str | None:
    """The path of a PostgreSQL server tool (on PATH, else the newest /usr/lib/postgresql)."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    for folder in reversed(versions):
        if (folder / name).exists():
            return str(folder / name)
    return None


def missing_for_postgres() -> list[str]:
    """What a throwaway cluster needs and this machine lacks (empty: nothing)."""
    missing = []
    if not (pg_tool("initdb") and pg_tool("pg_ctl")):
        missing.append("the PostgreSQL server binaries initdb / pg_ctl (apt install postgresql)")
    return missing


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextmanager
def postgres_cluster(root: Path, *, max_connections: int = 200) -> Iterator[str]:
    """Start a cluster with its data under ``root``; yield ``postgresql://memrec@127.0.0.1:<port>``."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o777)
    port = free_port()
    data = root / "data"
    initdb, pg_ctl = pg_tool("initdb") or "initdb", pg_tool("pg_ctl") or "pg_ctl"
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-A", "trust", "-U", "memrec"]),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {root} -c max_connections={max_connections} -c fsync=on"
    start = [pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    try:
        yield f"postgresql://memrec@127.0.0.1:{port}/postgres"
    finally:
        stop = [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(stop), check=False, capture_output=True)


_counter = iter(range(1_000_000))


def fresh_dataset_name(prefix: str = "t") -> str:
    """A dataset name no other test used in this session (its own Postgres schema)."""
    return f"{prefix}{os.getpid()}_{next(_counter)}"


def pg_url_fixture() -> Iterator[str]:
    """Session fixture body: one throwaway cluster for every Postgres test of the session.

    Its folder is under the system temp dir (pytest's is private to root; the server runs as
    the postgres user) and is removed afterwards.
    """
    missing = missing_for_postgres()
    if missing:
        pytest.skip("; ".join(missing))
    root = Path(tempfile.mkdtemp(prefix="memrec-pg-"))
    try:
        with postgres_cluster(root) as url:
            yield url
    finally:
        shutil.rmtree(root, ignore_errors=True)


pg_url = pytest.fixture(scope="session", name="pg_url")(pg_url_fixture)
