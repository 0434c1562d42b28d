"""The scaled deployment: event log, queue and audit in Postgres, memories on a Chroma server.

Several processes share one store here, as in production: 4 `memrec worker` processes drain one
job queue (each job claimed and applied once, no update lost), 4 writer processes hammer the same
memories (every compare-and-set write survives), and the deployment script (`python -m bench
deploy`) serves requests, records them once and propagates them through its workers.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from memory_store.chroma_store import ChromaMemoryStore
from memory_store.pg_events import PgEventLog, schema_name
from services.index import build_index
from tests.support.chroma_server import chroma_server
from tests.support.fixtures import DATASET, base_workspace, copy_store, data_dir
from tests.support.postgres import pg_url  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma")) as url:
        yield url


@pytest.fixture(scope="module")
def scaled_home(chroma_url: str, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """ml-100k with its memories on the Chroma server and an empty event log in Postgres."""
    home = copy_store(tmp_path_factory.mktemp("scaled-home"))
    build_index(DATASET, data_dir=data_dir(), home=home, chroma_url=chroma_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name(DATASET)}" CASCADE')
    return home


def _env(home: Path, pg: str, chroma: str) -> dict[str, str]:
    return {
        **os.environ,
        "MEMREC_HOME": str(home),
        "MEMREC_DATA_DIR": str(data_dir()),
        "MEMREC_DATABASE_URL": pg,
        "MEMREC_CHROMA_URL": chroma,
        "MEMREC_ROLES": "offline",
        "LANGSMITH_TRACING": "false",
    }


def test_four_workers_on_one_postgres_queue_apply_each_job_once(
    scaled_home: Path,
    pg_url: str,  # noqa: F811
    chroma_url: str,
    tmp_path: Path,
) -> None:
    ws = base_workspace()
    rng = random.Random(15)
    plan = []
    for user in map(str, range(1, 21)):
        u = ws.user_code(user)
        unseen = [i for i in ws.dataset.item_ids if not ws.graph.has(u, ws.item_code(i))]
        plan += [(user, item) for item in rng.sample(unseen, 4)]
    log = PgEventLog(pg_url, DATASET)
    recorded = [log.record_interaction(u, i) for u, i in plan]
    memrec = str(Path(sys.executable).with_name("memrec"))
    cmd = [memrec, "worker", "--dataset", DATASET, "--home", str(scaled_home), "--poll", "0.1"]
    env = _env(scaled_home, pg_url, chroma_url)
    logs = [open(tmp_path / f"worker{n}.log", "wb") for n in range(4)]  # noqa: SIM115
    workers = [
        subprocess.Popen([*cmd, "--in-flight", "4"], env=env, stdout=f, stderr=subprocess.STDOUT)
        for f in logs
    ]
    try:
        deadline = time.monotonic() + 600
        while (counts := log.counts())["done"] < len(recorded):
            assert time.monotonic() < deadline, f"not all done: {counts}"
            assert all(w.poll() is None for w in workers), (tmp_path / "worker0.log").read_text()
            time.sleep(0.5)
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=30)
    jobs = log.jobs(limit=10_000)
    assert [j.status for j in jobs] == ["done"] * len(recorded)
    # row locks: a job is never claimed by two workers; an attempt more means a failed one
    # (compare-and-set contention with the other workers), which is recorded
    assert all(j.attempts == 1 or j.last_error for j in jobs)
    touched: set[tuple[str, str]] = set()
    for event in recorded:
        rows = log.writes_caused_by(event.interaction_id)
        patches = Counter((r.kind, r.entity_id) for r in rows)
        assert patches and max(patches.values()) == 1
        touched |= set(patches)
    store = ChromaMemoryStore(url=chroma_url)
    for kind, entity in touched:  # no lost update: a gapless chain, ending at the stored record
        history = log.history(kind, entity)
        for before, after in zip(history, history[1:], strict=False):
            assert after.version == before.version + 1
            assert after.previous_text == before.new_text
        current = store.get(kind, entity)  # type: ignore[arg-type]
        assert current is not None and current.version == history[-1].version
        assert current.text == history[-1].new_text
    log.close()


def test_four_writer_processes_lose_no_update(
    scaled_home: Path,
    pg_url: str,  # noqa: F811
    chroma_url: str,
) -> None:
    hot = ["1", "2", "3"]
    store = ChromaMemoryStore(url=chroma_url)
    before = {i: store.get("item", i) for i in hot}
    rounds = 15
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.pg_writer",
                pg_url,
                chroma_url,
                DATASET,
                f"w{n}",
                str(rounds),
                ",".join(hot),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for n in range(4)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in writers]
    assert [w.returncode for w in writers] == [0] * 4, outputs
    log = PgEventLog(pg_url, DATASET)
    for item in hot:
        current = store.get("item", item)
        old = before[item]
        assert current is not None and old is not None
        assert current.version == old.version + 4 * rounds  # every write landed
        history = [r for r in log.history("item", item) if r.version > old.version]
        assert [r.version for r in history] == list(range(old.version + 1, current.version + 1))
        assert sorted(r.cause for r in history) == sorted(
            f"w{n}-{k}" for n in range(4) for k in range(rounds)
        )  # each writer's every write, once
        assert history[0].previous_text == old.text and history[-1].new_text == current.text
        for prev, row in zip(history, history[1:], strict=False):
            assert row.previous_text == prev.new_text  # each write built on the one before
            assert row.new_text.endswith(f"seen by {row.cause.replace('-', ' round ')}")
    log.close()


def test_the_deploy_script_serves_records_once_and_propagates(tmp_path: Path) -> None:
    from bench.common import BenchOptions
    from bench.deploy import scaled_deployment
    from tests.support.fixtures import indexed_home

    opts = BenchOptions(home=indexed_home(), data_dir=data_dir(), out=tmp_path)
    with scaled_deployment(DATASET, opts, servers=2, workers=2) as dep:
        body = {
            "input": {
                "user_id": "7",
                "candidates": ["50", "181"],
                "feedback": [{"item_id": "181"}],
                "idempotency_key": "order-1",
            }
        }
        first = httpx.post(f"{dep.url}/recommend", json=body, timeout=120).json()
        again = httpx.post(f"{dep.url}/recommend", json=body, timeout=120).json()
        assert sorted(r["item_id"] for r in first["ranking"]) == ["181", "50"]
        assert first["recorded"] == again["recorded"] and len(first["recorded"]) == 1
        threaded = {"input": {"user_id": "8"}, "thread_id": "conversation-1"}
        assert httpx.post(f"{dep.url}/recommend", json=threaded, timeout=120).status_code == 200
        deadline = time.monotonic() + 120
        while (counts := httpx.get(f"{dep.url}/jobs", timeout=30).json())["done"] < 1:
            assert time.monotonic() < deadline, counts
            time.sleep(0.5)
        assert counts == {"pending": 0, "running": 0, "done": 1, "failed": 0}
        with psycopg.connect(dep.database_url) as conn:
            schema = schema_name(DATASET)
            (writes,) = conn.execute(f'SELECT count(*) FROM "{schema}".audit').fetchone()
            (threads,) = conn.execute(
                "SELECT count(DISTINCT thread_id) FROM checkpoints WHERE thread_id=%s",
                ("conversation-1",),
            ).fetchone()
        assert 2 <= writes <= 10 and threads == 1
