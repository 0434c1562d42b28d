"""Run the OpenAI-compatible test server in its own process (``python -m bench._server``).

The benchmarks that time our code start the model server here rather than on a thread of the
measuring process, so the server's request handling never competes with the client for the GIL.
The runner prints one line, ``URL <http://127.0.0.1:port>``, then serves until stdin closes or it
receives SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.support.openai_server import OpenAITestServer


def main(argv: list[str] | None = None) -> int:
    """Start the server with a fixed per-call latency and serve until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m bench._server")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per chat call")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes the pipe (or dies)
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    with OpenAITestServer(latency_s=args.latency) as server:
        sys.stdout.write(f"URL {server.url}\n")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
