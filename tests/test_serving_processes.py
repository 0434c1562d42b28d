"""Serving processes: several on one port with the connections spread, and their collector tuned."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from memory_store import gc_tuning
from services import http_serve
from tests.support.chroma_server import free_port

REPO = Path(__file__).resolve().parents[1]


def test_sockets_sharing_a_port_each_get_a_share_of_the_connections() -> None:
    port = free_port()
    listeners = [http_serve.reuseport_socket("127.0.0.1", port) for _ in range(2)]
    clients = []
    try:
        for _ in range(32):  # bounded: 32 connections, from distinct source ports
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        accepted = []
        for listener in listeners:
            listener.setblocking(False)
            n = 0
            while True:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    break
                conn.close()
                n += 1
            accepted.append(n)
        assert sum(accepted) == 32
        assert min(accepted) >= 4  # hashed over both (a 32-to-0 split has odds of 2 in 2^32)
    finally:
        for sock in [*clients, *listeners]:
            sock.close()


def test_a_port_held_by_another_program_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            http_serve.reuseport_socket("127.0.0.1", port)
        assert http_serve.main(["--port", str(port), "--processes", "2"]) == 2
    assert f"http_serve: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_a_port_another_http_serve_holds_is_refused_not_shared(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A second deployment on the port would silently join the first's SO_REUSEPORT group."""
    port = free_port()
    earlier = http_serve.reuseport_socket("127.0.0.1", port)  # a running http_serve's socket
    try:
        assert http_serve.main(["--port", str(port), "--processes", "2"]) == 2
    finally:
        earlier.close()
    assert "another http_serve, holds it" in capsys.readouterr().err


def test_processes_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert http_serve.main(["--port", str(free_port()), "--processes", "0"]) == 2
    assert "processes must be >= 1" in capsys.readouterr().err


def test_the_unauthenticated_app_is_not_served_beyond_loopback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert http_serve.main(["--host", "0.0.0.0", "--port", str(free_port())]) == 2
    assert "loopback address only" in capsys.readouterr().err


@pytest.mark.slow
def test_the_supervisor_exits_with_its_children_when_they_cannot_start(tmp_path: Path) -> None:
    """Serving processes without an indexed store stop at start-up; so does their supervisor."""
    env = {
        **os.environ,
        "MEMREC_HOME": str(tmp_path),
        "MEMREC_DATASET": "ml-100k",
        "LANGSMITH_TRACING": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.http_serve", "--port", str(free_port()),
         "--processes", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode not in (0, None), out
    assert "not indexed" in out


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_the_young_generation_threshold_follows_the_environment(
    thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, gen1, gen2 = gc.get_threshold()
    monkeypatch.delenv(gc_tuning.GEN0_ENV, raising=False)
    assert gc_tuning.tune() == (gc_tuning.DEFAULT_GEN0, gen1, gen2)
    monkeypatch.setenv(gc_tuning.GEN0_ENV, "700")
    assert gc_tuning.tune() == (700, gen1, gen2)  # Python's own default, restored


@pytest.mark.parametrize("raw", ["lots", "0", "-5", "1.5"])
def test_a_bad_threshold_names_the_variable(
    thresholds: None, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    before = gc.get_threshold()
    monkeypatch.setenv(gc_tuning.GEN0_ENV, raw)
    with pytest.raises(ValueError, match=gc_tuning.GEN0_ENV):
        gc_tuning.tune()
    assert gc.get_threshold() == before


def test_young_garbage_cycles_are_still_collected(thresholds: None) -> None:
    """The tuned collector runs later, not never: a cycle goes after 50,000 allocations."""
    gc.set_threshold(50_000, 10, 10)

    class Node:
        other: object

    probe = Node()
    probe.other = probe  # a cycle only the collector frees
    ref = weakref.ref(probe)
    del probe
    for _ in range(200_000):  # bounded: a young collection comes after 50,000 of these
        a, b = Node(), Node()
        a.other, b.other = b, a
        if ref() is None:
            break
    assert ref() is None
