"""Run the real `langgraph dev` server on a free 127.0.0.1 port for a test module, then stop it."""

from __future__ import annotations

import json
import os
import re
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
    """The project's own langgraph.json with ``env`` as its environment (serve from REPO)."""
    config = json.loads((REPO / "langgraph.json").read_text())
    assert "env" not in config, "the shipped langgraph.json must not load an env file"
    config["env"] = dict(env)
    path = tmp / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


@contextmanager
def langgraph_dev(config: Path, env: Mapping[str, str], log: Path, cwd: Path) -> Iterator[str]:
    """Start `langgraph dev` with ``config``; yield its URL once /ok answers; always stop it."""
    port = free_port()
    cmd = [*serve_command(port, config), "--no-reload"]
    with server_process(cmd, port, env, log, cwd) as url:
        yield url


@contextmanager
def server_process(
    cmd: list[str], port: int, env: Mapping[str, str], log: Path, cwd: Path
) -> Iterator[str]:
    """Run ``cmd`` (a server on 127.0.0.1:``port``) in its own process group until /ok answers."""
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
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in {STARTUP_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)


def run_to_exit(
    cmd: list[str], env: Mapping[str, str], cwd: Path, timeout_s: float = STARTUP_S
) -> tuple[int, str]:
    """Run a server command that is expected to refuse to start; its exit code and output."""
    env = {**env, "LANGSMITH_TRACING": "false", "LANGGRAPH_NO_VERSION_CHECK": "true"}
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        stop(proc)
        pytest.fail(f"{cmd[:3]} did not exit within {timeout_s} s (it should refuse to start)")
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.decode(errors="replace"))
    return proc.returncode, text


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
