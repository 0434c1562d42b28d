"""The model server the benchmarks start on 127.0.0.1 and stop.

``model_server(latency_s, process=True)`` runs ``tests.support.openai_server.OpenAITestServer`` in a
subprocess (``bench/_server.py``) so its request handling does not share the measuring process's
GIL; ``process=False`` runs it on a thread (its call counters are then readable). The Chroma server
comes from ``tests.support.chroma_server``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.common import REPO
from tests.support.openai_server import OpenAITestServer


@dataclass
class ModelServer:
    """A running model server: its base URL and, when in-process, the server object."""

    url: str
    server: OpenAITestServer | None = None

    def spec(self, model: str = "test") -> str:
        """The OpenAI-compatible model spec pointing at this server."""
        return f"openai-compatible:{model}@{self.url}/v1"


@contextmanager
def model_server(latency_s: float = 0.0, *, process: bool = True) -> Iterator[ModelServer]:
    """The test server with ``latency_s`` per chat call, in a subprocess or on a thread."""
    if not process:
        with OpenAITestServer(latency_s=latency_s) as server:
            yield ModelServer(server.url, server)
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench._server", "--latency", str(latency_s)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("URL "):
            raise RuntimeError(f"the test server subprocess did not start (said {line!r})")
        yield ModelServer(line.split(" ", 1)[1])
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
