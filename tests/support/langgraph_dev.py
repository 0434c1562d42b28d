"""Run the real `langgraph dev` server on a free 127.0.0.1 port for a test module, then stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cli.chat_cmds import serve_command
from tests.support.chroma_server import free_port

STARTUP_S = 120.0
REPO = Path(__file__).resolve().parents[2]


def project_config(tmp: Path, env: Mapping[str, str]) -> Path:
    """The project's own langgraph.json with its env file replaced by ``env`` (serve from REPO).

    The shipped `.env.example` would otherwise override the test's store location.
    """
    config = json.loads((REPO / "langgraph.json").read_text())
    config["env"] = dict(env)
    path = tmp / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


@contextmanager
def langgraph_dev(config: Path, env: Mapping[str, str], log: Path, cwd: Path) -> Iterator[str]:
    """Start `langgraph dev` with ``config``; yield its URL once /ok answers; always stop it."""
    port = free_port()
    cmd = [*serve_command(port, config), "--no-reload"]
    env = {**env, "LANGSMITH_TRACING": "false", "LANGGRAPH_NO_VERSION_CHECK": "true"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not ready in {STARTUP_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
