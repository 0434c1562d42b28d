"""Exactly once with real processes: `langgraph dev` and a `memrec worker` on one queue, SIGKILL.

The deployment of issue 15: the LangGraph server records feedback and starts a background
propagate run per interaction, while a `memrec worker` process drains the same event log; the
memories are on a Chroma server both write to. Then the server is SIGKILLed in the middle of a
wave of requests, restarted on the same folder (it replays the runs it had saved) and the
client retries every request of that wave with its idempotency key. Whatever ran what, each
interaction is recorded once and each (interaction, memory) patch is written once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client

from cli.chat_cmds import serve_command
from memory_store.events import EventLog
from services.index import build_index
from tests.support.chroma_server import chroma_server, free_port
from tests.support.fixtures import DATASET, base_workspace, copy_store, data_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[1]
FANOUT_CAP = 8


def server_config(folder: Path) -> Path:
    """The shipped langgraph.json with absolute paths, so the server can run in ``folder``."""
    config = json.loads((REPO / "langgraph.json").read_text())
    for graph in config["graphs"].values():  # {"path": "./...", "description": ...}
        graph["path"] = _absolute(graph["path"])
    config["http"]["app"] = _absolute(config["http"]["app"])
    config["store"]["path"] = _absolute(config["store"]["path"])
    config["dependencies"] = [str(REPO)]
    config["auth"]["path"] = _absolute(config["auth"]["path"])  # MEMREC_AUTH=off: open
    config["env"] = {}
    path = folder / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


def _absolute(path: str) -> str:
    return str(REPO / path.removeprefix("./"))


class Server:
    """`langgraph dev` in its own folder (its saved runs live there), startable again."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.config = server_config(folder)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.folder / f"server-{self.starts}.log", "wb")  # noqa: SIM115
        # --allow-blocking: `synthesize` reads memories on the event loop (a cache miss is an
        # HTTP call to the Chroma server here); that is the read path's business, not this test's
        cmd = [*serve_command(self.port, self.config, allow_blocking=True), "--no-reload"]
        self.proc = subprocess.Popen(
            cmd, cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(f"{self.url}/ok", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail(f"langgraph dev not ready:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.folder.glob("*.log")))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, dict]]:
    tmp = tmp_path_factory.mktemp("exactly-once")
    with chroma_server(tmp) as chroma_url:
        home = copy_store(tmp / "home")
        build_index(DATASET, data_dir=data_dir(), home=home, chroma_url=chroma_url)
        env = {
            **os.environ,
            "MEMREC_HOME": str(home),
            "MEMREC_DATA_DIR": str(data_dir()),
            "MEMREC_ROLES": "offline",
            "MEMREC_CHROMA_URL": chroma_url,
            "MEMREC_AUTH": "off",  # open server on 127.0.0.1 (no token table in this test)
            "LANGSMITH_TRACING": "false",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
        }
        folder = tmp / "server"
        folder.mkdir()
        server = Server(folder, env)
        memrec = str(Path(sys.executable).with_name("memrec"))
        worker_log = open(tmp / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [memrec, "worker", "--dataset", DATASET, "--home", str(home), "--poll", "0.1"],
            env=env, stdout=worker_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            server.start()
            yield server, home / "stores" / DATASET / "events.sqlite", env
        finally:
            server.stop()
            worker.terminate()
            worker.wait(timeout=30)


def requests(n: int, offset: int) -> list[dict]:
    """Recommend requests with one feedback each, for distinct (user, unseen item) pairs."""
    ws = base_workspace()
    out = []
    for k in range(n):
        user = str(1 + (offset + k) % 40)
        u = ws.user_code(user)
        item = next(
            i
            for i in ws.dataset.item_ids[300 + offset + k :]
            if not ws.graph.has(u, ws.item_code(i))
        )
        out.append(
            {
                "user_id": user,
                "candidates": [item],
                "feedback": [{"item_id": item}],
                "idempotency_key": f"req-{offset + k}",
            }
        )
    return out


async def send(url: str, inputs: list[dict], concurrency: int = 6) -> list[dict | None]:
    """Every request as a stateless run; None for one the server did not answer."""
    client = get_client(url=url)
    gate = asyncio.Semaphore(concurrency)

    async def one(inp: dict) -> dict | None:
        async with gate:
            try:
                return await client.runs.wait(None, "recommend", input=inp)
            except (httpx.HTTPError, OSError, ValueError):
                return None

    return list(await asyncio.gather(*(one(i) for i in inputs)))


def wait_all_done(events_path: Path, expected: int, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with EventLog(events_path) as log:
            counts = log.counts()
        if counts["done"] >= expected and counts["pending"] == counts["running"] == 0:
            return
        assert time.monotonic() < deadline, f"jobs not all done: {counts}"
        time.sleep(0.5)


def assert_exactly_once(events_path: Path, expected_keys: int) -> None:
    with EventLog(events_path) as log:
        interactions = log.interactions()
        jobs = {j.interaction_id: j for j in log.jobs(limit=10_000)}
        audits = {e.interaction_id: log.writes_caused_by(e.interaction_id) for e in interactions}
        histories = {
            (r.kind, r.entity_id): log.history(r.kind, r.entity_id)
            for rows in audits.values()
            for r in rows
        }
    assert len(interactions) == expected_keys  # one per request, retries and replays included
    assert len({(e.user_id, e.item_id) for e in interactions}) == expected_keys
    for event in interactions:
        job = jobs[event.interaction_id]
        assert job.status == "done", job
        patches = Counter((r.kind, r.entity_id) for r in audits[event.interaction_id])
        assert patches and max(patches.values()) == 1, f"a patch applied twice: {patches}"
        assert len(patches) <= 2 + FANOUT_CAP
        planned = {tuple(ref.split(":", 1)) for ref, _ in job.fanout or []}
        planned |= {("user", event.user_id), ("item", event.item_id)}
        assert set(patches) <= planned, "a record outside the job's fan-out was patched"
    for rows in histories.values():  # no lost update: each write saw the one before it
        for before, after in zip(rows, rows[1:], strict=False):
            assert after.version == before.version + 1
            assert after.previous_text == before.new_text


def test_server_and_worker_together_propagate_each_interaction_once(
    deployment: tuple[Server, Path, dict],
) -> None:
    server, events_path, _ = deployment
    first = requests(24, 0)
    answers = asyncio.run(send(server.url, first))
    assert all(a is not None and a["recorded"] for a in answers)
    wait_all_done(events_path, len(first))
    assert "Starting background run" in server.log()  # the server ran propagations too
    assert_exactly_once(events_path, len(first))

    wave = requests(24, 100)

    async def send_and_kill() -> None:
        sending = asyncio.ensure_future(send(server.url, wave, concurrency=4))
        await asyncio.sleep(2.0)
        server.kill()  # mid-wave: runs in flight, recorded and not, propagations half done
        await sending

    asyncio.run(send_and_kill())
    server.start()  # the same folder: the server replays what it had saved
    retried = asyncio.run(send(server.url, wave))  # the client retries the whole wave
    assert all(a is not None and a["recorded"] for a in retried)
    wait_all_done(events_path, len(first) + len(wave))
    assert_exactly_once(events_path, len(first) + len(wave))
