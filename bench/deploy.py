"""The scaled deployment on loopback, no Docker: Postgres, a Chroma server, N servers, M workers.

``scaled_deployment(...)`` starts, under a temporary folder and on free 127.0.0.1 ports:

1. a throwaway PostgreSQL cluster (``initdb`` / ``pg_ctl`` from ``/usr/lib/postgresql/*/bin``):
   the event log, job queue and audit (``MEMREC_DATABASE_URL``) and LangGraph checkpoints;
2. a Chroma server (``chroma run``) holding the memories (``MEMREC_CHROMA_URL``), filled by
   ``build_index`` from the benchmark home's index of the dataset;
3. ``python -m services.http_serve --processes N``: N serving processes of
   ``services.http_api`` on one port (each its own ``SO_REUSEPORT`` socket, so the kernel spreads
   the connections), recording feedback without propagating it (``MEMREC_PROPAGATION=external``);
4. M ``memrec worker --in-flight 8`` processes draining the shared job queue;

and stops everything on exit. ``python -m bench deploy`` runs it until Enter / Ctrl-C and prints
the URLs; ``python -m bench throughput`` measures it beside the single process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.common import REPO, BenchOptions
from bench.cpu_parts import Roots, children_matching, postmaster_pid
from bench.setup import ensure_index
from dataio.paths import store_dir
from memory_store.events import EventLog
from services.index import build_index
from tests.support.chroma_server import chroma_server, free_port
from tests.support.postgres import missing_for_postgres, postgres_cluster


@dataclass
class Deployment:
    """A running scaled deployment."""

    url: str  # the serving processes, behind one port
    database_url: str
    chroma_url: str
    home: Path
    env: dict[str, str]
    servers: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    postgres_data: Path | None = None  # the cluster's data folder (its postmaster.pid)

    def serving_pids(self) -> list[int]:
        """The serving supervisor and its serving processes."""
        parent = psutil.Process(self.servers.pid)
        return [parent.pid, *(c.pid for c in parent.children(recursive=True))]

    def cpu_parts(self) -> dict[str, Roots]:
        """The deployment's parts for ``bench.cpu_parts.CpuParts`` (root pids, looked up live)."""
        data = self.postgres_data
        return {
            "serving": lambda: [self.servers.pid],
            "postgres": lambda: postmaster_pid(data) if data else [],
            "chroma": lambda: children_matching("chroma", "run"),
            "workers": lambda: [w.pid for w in self.workers],
        }

    def settle(self, quiet: float = 0.05, timeout_s: float = 90.0) -> float:
        """Wait until the serving processes use under ``quiet`` of a core; the seconds waited.

        Their start-up work (the memory cache warm-up) would otherwise count in the first wave.
        """
        started = time.monotonic()
        pids = self.serving_pids()
        while time.monotonic() - started < timeout_s:
            before = self.cpu_seconds(pids)
            time.sleep(1.0)
            if self.cpu_seconds(pids) - before < quiet:
                break
        return time.monotonic() - started

    def cpu_seconds(self, pids: list[int]) -> float:
        """User + system CPU seconds used so far by these processes (gone ones count 0)."""
        total = 0.0
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


def _store_home(dataset: str, opts: BenchOptions, root: Path, chroma_url: str) -> Path:
    """A home with the dataset's index files and its memories loaded into the Chroma server.

    The embedded Chroma folder and the SQLite event log are left out: Postgres and the server
    hold those parts.
    """
    ensure_index(dataset, opts)
    home = root / "home"
    shutil.copytree(
        store_dir(dataset, opts.home),
        store_dir(dataset, home),
        ignore=shutil.ignore_patterns("events.sqlite*", "chroma"),
    )
    EventLog(store_dir(dataset, home) / "events.sqlite").close()  # local privacy choices only
    build_index(dataset, data_dir=opts.data_dir, home=home, chroma_url=chroma_url)
    return home


def _checkpoint_tables(database_url: str) -> None:
    """Create LangGraph's checkpoint tables (``PostgresSaver.setup``)."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with PostgresSaver.from_conn_string(database_url) as saver:
        saver.setup()


def _wait_ok(url: str, procs: list[subprocess.Popen[bytes]], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a process exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready in {timeout_s} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def scaled_deployment(
    dataset: str, opts: BenchOptions, *, servers: int = 2, workers: int = 1
) -> Iterator[Deployment]:
    """Start the scaled deployment (see the module docstring); stop it all on exit."""
    missing = missing_for_postgres()
    if missing:
        raise RuntimeError("the scaled deployment needs " + "; ".join(missing))
    root = Path(tempfile.mkdtemp(prefix="memrec-deploy-"))
    root.chmod(0o755)  # the Postgres server runs as the postgres user when we are root
    try:
        with ExitStack() as stack:
            database_url = stack.enter_context(postgres_cluster(root / "postgres"))
            chroma_url = stack.enter_context(chroma_server(root))
            home = _store_home(dataset, opts, root, chroma_url)
            _checkpoint_tables(database_url)  # once, before the servers race to create them
            env = {
                **os.environ,
                "MEMREC_HOME": str(home),
                "MEMREC_DATA_DIR": str(opts.data_dir),
                "MEMREC_DATASET": dataset,
                "MEMREC_DATABASE_URL": database_url,
                "MEMREC_CHROMA_URL": chroma_url,
                "MEMREC_ROLES": "offline",
                "MEMREC_PROPAGATION": "external",
                "LANGSMITH_TRACING": "false",
            }
            try:
                dep = _start(stack, root, home, env, servers, workers, database_url, chroma_url)
                dep.postgres_data = root / "postgres" / "data"  # see postgres_cluster
                yield dep
            except BaseException:
                log = root / "deployment.log"
                tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
                sys.stderr.write(f"scaled deployment failed; its log ends with:\n{tail}\n")
                raise
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(
    stack: ExitStack,
    root: Path,
    home: Path,
    env: dict[str, str],
    servers: int,
    workers: int,
    database_url: str,
    chroma_url: str,
) -> Deployment:
    log = root / "deployment.log"
    out = stack.enter_context(open(log, "wb"))
    port = free_port()
    bin_dir = Path(sys.executable).parent
    serve = [
        sys.executable, "-m", "services.http_serve", "--host", "127.0.0.1",
        "--port", str(port), "--processes", str(servers), "--log-level", "warning",
    ]  # fmt: skip
    procs = [subprocess.Popen(serve, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)]
    stack.callback(_stop, procs[0])
    for _ in range(workers):
        worker = subprocess.Popen(
            [str(bin_dir / "memrec"), "worker", "--dataset", env["MEMREC_DATASET"],
             "--home", str(home), "--in-flight", "8", "--poll", "0.2"],
            cwd=REPO, env={**env, "MEMREC_PROPAGATION": "worker"}, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        stack.callback(_stop, worker)
        procs.append(worker)
    url = f"http://127.0.0.1:{port}"
    _wait_ok(url, procs, log, timeout_s=240)
    return Deployment(url, database_url, chroma_url, home, env, procs[0], procs[1:])


def serve_until_enter(dataset: str, opts: BenchOptions, servers: int, workers: int) -> None:
    """``python -m bench deploy``: start, print where everything is, stop on Enter / Ctrl-C."""
    with scaled_deployment(dataset, opts, servers=servers, workers=workers) as dep:
        sys.stdout.write(
            f"serving     {dep.url}  ({servers} processes: POST /recommend, POST /feedback)\n"
            f"postgres    {dep.database_url}\nchroma      {dep.chroma_url}\n"
            f"workers     {workers} x memrec worker --in-flight 8\nhome        {dep.home}\n"
            "Enter or Ctrl-C stops everything.\n"
        )
        sys.stdout.flush()
        try:
            sys.stdin.readline()
        except KeyboardInterrupt:
            pass
