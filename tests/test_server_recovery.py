"""A restarted `langgraph dev` finishes the jobs a killed one left, with no request to wake it.

Before the server starts, the store's event log holds what a SIGKILLed server leaves behind: one
job claimed under a lease that has lapsed (its run died mid-propagation) and one job still
pending (its background run never started). The server then gets no request at all.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from memory_store.events import EventLog
from tests.support.fixtures import DATASET, base_workspace, copy_store, data_dir
from tests.support.langgraph_dev import langgraph_dev, project_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG_AGO_S = 600.0  # the killed server recorded these ten minutes ago


def _unseen_pairs(n: int) -> list[tuple[str, str]]:
    ws = base_workspace(DATASET)
    pairs: list[tuple[str, str]] = []
    for u in range(n):
        item = next(i for i in range(ws.dataset.n_items) if not ws.graph.has(u, i))
        pairs.append((ws.dataset.user_ids[u], ws.dataset.item_ids[item]))
    return pairs


def test_a_restarted_server_sweeps_the_jobs_a_killed_server_left(tmp_path: Path) -> None:
    home = copy_store(tmp_path / "home")
    events = home / "stores" / DATASET / "events.sqlite"
    (claimed_pair, pending_pair) = _unseen_pairs(2)
    with EventLog(events, clock=lambda: time.time() - LONG_AGO_S) as log:
        claimed = log.record_interaction(*claimed_pair, kind="positive", ts=time.time())
        pending = log.record_interaction(*pending_pair, kind="positive", ts=time.time())
        assert log.claim(claimed.interaction_id, "killed-server", lease_s=60) == "claimed"
    with EventLog(events) as log:
        assert {j.status for j in log.jobs()} == {"running", "pending"}

    env = {**os.environ, "MEMREC_HOME": str(home), "MEMREC_DATA_DIR": str(data_dir())}
    env.update(MEMREC_AUTH="off", MEMREC_ROLES="offline", MEMREC_DATASET=DATASET)
    config = project_config(tmp_path, {"MEMREC_HOME": str(home), "MEMREC_ROLES": "offline"})
    log_file = tmp_path / "server.log"
    with langgraph_dev(config, env, log_file, cwd=Path(__file__).resolve().parents[1]):
        deadline = time.monotonic() + 120
        while True:  # no request is sent: the server must find the jobs itself
            with EventLog(events) as log:
                jobs = {j.interaction_id: j for j in log.jobs()}
            if all(j.status == "done" for j in jobs.values()):
                break
            left = [(j.interaction_id, j.status) for j in jobs.values()]
            assert time.monotonic() < deadline, (
                f"jobs left: {left}\n{log_file.read_text(errors='replace')[-3000:]}"
            )
            time.sleep(1.0)
    with EventLog(events) as log:
        for event in (claimed, pending):
            writes = log.writes_caused_by(event.interaction_id)
            assert {(w.kind, w.entity_id) for w in writes} >= {("user", event.user_id)}
            assert len(writes) == len({(w.kind, w.entity_id) for w in writes})  # each once
    assert "left by an earlier run" in log_file.read_text(errors="replace")
