"""The LangGraph dev server for the chaos scenarios: start on a free 127.0.0.1 port, kill, restart.

Serves the project's own ``langgraph.json`` graphs over a given store (``MEMREC_HOME``), offline
roles, with its own ``.langgraph_api`` folder under ``workdir`` (so a deletion test can grep it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from bench.paths import REPO, default_data_dir
from memory_store.malloc_hygiene import server_env

STARTUP_S = 180.0


def serve_command(port: int, config: Path) -> list[str]:
    """`langgraph dev` on 127.0.0.1 (as `memrec serve` runs it), without reload or browser."""
    local = Path(sys.executable).with_name("langgraph")
    exe = str(local) if local.exists() else shutil.which("langgraph") or "langgraph"
    return [exe, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
            "--config", str(config), "--no-reload"]  # fmt: skip


def _absolute(spec: str) -> str:
    """A ``./module.py:attr`` path of the project's langgraph.json, made absolute."""
    return str(REPO / spec.removeprefix("./"))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DevServer:
    """One `langgraph dev` process over a store; ``start`` / ``kill`` / ``stop`` / ``restart``."""

    def __init__(self, home: Path, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_env = dict(extra_env or {})
        workdir.mkdir(parents=True, exist_ok=True)

    def _config(self, env: dict[str, str]) -> Path:
        config = json.loads((REPO / "langgraph.json").read_text())
        config["env"] = env
        for spec in config["graphs"].values():  # {"path": ..., "description": ...}
            spec["path"] = _absolute(spec["path"])
        config["auth"]["path"] = _absolute(config["auth"]["path"])
        if "http" in config:
            config["http"]["app"] = _absolute(config["http"]["app"])
        if "store" in config:
            config["store"]["path"] = _absolute(config["store"]["path"])
        config["dependencies"] = [str(REPO)]
        path = self.workdir / "langgraph.json"
        path.write_text(json.dumps(config))
        return path

    def start(self) -> None:
        """Start the server and wait until /ok answers."""
        env = {
            "MEMREC_HOME": str(self.home),
            "MEMREC_DATA_DIR": str(default_data_dir()),
            "MEMREC_ROLES": "offline",
            "MEMREC_AUTH": "off",  # open mode, refused anywhere but on loopback
            **self.extra_env,
        }
        cmd = serve_command(self.port, self._config(env))
        full_env = {
            **server_env(),  # as `memrec serve` starts it
            **env,
            "LANGSMITH_TRACING": "false",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"langgraph dev exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"langgraph dev not ready: {self.log.read_text()[-2000:]}")
            time.sleep(0.3)

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        """Resident memory of the server process and its children (MB)."""
        return self.memory_mb()["rss_mb"]

    def memory_mb(self) -> dict[str, float]:
        """Resident memory of the server and its children (MB): all, and file-backed pages.

        File-backed pages (``shared``: mapped libraries and files, e.g. an index read through
        mmap) are the kernel's page cache and can be dropped under pressure; the rest (anonymous
        memory: heaps, arenas) is what a leak grows.
        """
        proc = psutil.Process(self.pid)
        rss = file = 0
        for p in (proc, *proc.children(recursive=True)):
            try:
                info = p.memory_info()
            except psutil.NoSuchProcess:
                continue
            rss += info.rss
            file += getattr(info, "shared", 0)
        return {"rss_mb": rss / 1e6, "anon_mb": (rss - file) / 1e6, "file_mb": file / 1e6}

    def kill(self) -> None:
        """SIGKILL the server's process group (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> None:
        """Start again on the same port and store."""
        self.start()
