"""Run N serving processes of ``services.http_api`` on one port, connections spread by the kernel.

``python -m services.http_serve --port 8080 --processes 3`` starts three processes, each with its
own listening socket bound to the port with ``SO_REUSEPORT``: Linux hashes every new connection
to one of them, so long-lived client connections end up spread about evenly.
``uvicorn --workers N`` shares one socket instead, and the process that wins ``accept`` takes the
connection: measured with the throughput benchmark's 64 keep-alive connections and three
processes, their CPU split 0.93 / 2.24 / 3.77 s, and the busiest one's queue set the latency.

The parent only supervises: it exits when a child does (with its code), and stops the children
on SIGTERM / SIGINT. Each child runs uvicorn on uvloop and httptools, without access log.
Linux lets only processes of the same user join a ``SO_REUSEPORT`` group.

``services.http_api`` authenticates no one (any caller may ask for any user), so the processes
bind to a loopback address only: put an authenticating gateway on the same host in front of
them. A non-loopback ``--host`` is refused.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from services.auth_policy import is_loopback

APP = "services.http_api:app"


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other processes of this user may share."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("SO_REUSEPORT is not available on this platform; use uvicorn --workers")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _check_free(host: str, port: int) -> None:
    """Refuse a port anything listens on, another ``SO_REUSEPORT`` group included.

    The children's sockets would join a group of this user's processes already on the port (an
    earlier http_serve still running) and silently share its traffic; a plain bind refuses it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise OSError(
                f"cannot listen on {host}:{port}: {err.strerror or err} (another server, or "
                "another http_serve, holds it)"
            ) from err


def serve_one(host: str, port: int, log_level: str = "warning") -> None:
    """One serving process: uvicorn on its own ``SO_REUSEPORT`` socket (blocks)."""
    import uvicorn

    sock = reuseport_socket(host, port)
    config = uvicorn.Config(
        APP,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=log_level,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _child_command(host: str, port: int, log_level: str) -> list[str]:
    return [
        sys.executable, "-m", "services.http_serve", "--one",
        "--host", host, "--port", str(port), "--log-level", log_level,
    ]  # fmt: skip


def serve(host: str, port: int, processes: int, log_level: str = "warning") -> int:
    """Start ``processes`` serving processes and supervise them; their first exit code."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if not is_loopback(host):
        raise ValueError(
            f"--host {host}: services.http_api authenticates no one, so it serves on a loopback "
            "address only (127.0.0.1, ::1); put an authenticating gateway in front of it"
        )
    _check_free(host, port)
    children = [subprocess.Popen(_child_command(host, port, log_level)) for _ in range(processes)]

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while True:
            for child in children:
                code = child.poll()
                if code is not None:
                    stop(signal.SIGTERM, None)
                    for other in children:
                        _wait(other)
                    return code
            time.sleep(0.2)
    finally:
        for child in children:
            _wait(child)


def _wait(child: subprocess.Popen[bytes]) -> None:
    try:
        child.wait(timeout=20)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (module docstring); the exit code (2: a bad setting or a taken port)."""
    parser = argparse.ArgumentParser(
        prog="python -m services.http_serve",
        description="N serving processes of services.http_api on one port (SO_REUSEPORT).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 1, help="serving processes"
    )
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.one:
            serve_one(args.host, args.port, args.log_level)
            return 0
        return serve(args.host, args.port, args.processes, args.log_level)
    except (OSError, ValueError) as err:
        sys.stderr.write(f"http_serve: {err}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
