"""Start a real Chroma server on 127.0.0.1 for integration tests, and always stop it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chroma_executable() -> Path:
    """The ``chroma`` CLI of this virtualenv (next to the running interpreter)."""
    exe = Path(sys.executable).with_name("chroma")
    if not exe.exists():
        raise FileNotFoundError(
            f"no chroma executable next to {sys.executable}; is chromadb installed?"
        )
    return exe


def _wait_for_heartbeat(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(
        f"chroma at {url} not up after {STARTUP_TIMEOUT_S}s: {log.read_text()[-2000:]}"
    )


@contextmanager
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """Run ``chroma run`` with its data under ``tmp_path``; yields ``http://127.0.0.1:<port>``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "chroma-server-data"
    log = tmp_path / "chroma-server.log"
    cmd = [str(chroma_executable()), "run", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen([*cmd, "--path", str(data)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_heartbeat(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
