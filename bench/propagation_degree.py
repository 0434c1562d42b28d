"""Model calls per propagation against the acting user's degree (5, 50, 500, 5,000).

A synthetic generic-format dataset (``bench/synthetic.py``) gets one user per degree on top of a
small background graph; it is indexed into a temporary home. For each degree, a few new
interactions are recorded and propagated with the propagate graph against the
test server (a subprocess, 0 ms). Calls are counted twice: the usage the propagation reports and
the chat-completion requests seen on the model client's transport.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchOptions, BenchResult, finish, new_result, summary, target
from bench.servers import model_server
from bench.setup import context
from bench.synthetic import degree_dataset
from bench.timing import HttpClock, http_clock
from graph.propagate import graph as propagate_graph
from memory_store.workspace import Workspace, get_workspace
from nodes.record import record_interaction
from services.index import build_index

NAME = "propagation_degree"
DEGREES = [5, 50, 500, 5000]
METHOD = (
    "One user per train degree on a synthetic generic-format graph (300 background users x 20 "
    "items, plus the degree users); each recorded interaction is propagated once against the "
    "test server in a subprocess. calls = CallUsage.calls of the propagation; wire_calls = HTTP "
    "requests on the model client's transport; own_ms = wall time minus the model round trip."
)


async def _propagate(
    ws: Workspace, ctx: Any, user: str, reps: int, http: HttpClock
) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"calls": [], "wire": [], "tokens": [], "own_ms": []}
    seen = set(ws.graph.user_item_times(ws.user_code(user))[0].tolist())
    fresh = [i for i in np.random.default_rng(7).permutation(ws.dataset.n_items) if i not in seen]
    for item in fresh[:reps]:
        event = record_interaction(ws, user, ws.dataset.item_ids[int(item)])
        http.reset()
        started = time.perf_counter()
        report = (await propagate_graph.ainvoke({"event": event}, context=ctx))["report"]
        out["own_ms"].append((time.perf_counter() - started - http.seconds) * 1000.0)
        out["calls"].append(report.usage.calls)
        out["wire"].append(http.calls)
        out["tokens"].append(report.usage.tokens_in + report.usage.tokens_out)
    return out


def run(opts: BenchOptions) -> BenchResult:
    """Run the propagation-degree benchmark and write ``propagation_degree.json``."""
    degrees = [5, 50, 500] if opts.smoke else DEGREES
    reps = opts.size(5, 3, 1)
    result = new_result(NAME, opts, METHOD, degrees=degrees, interactions_per_degree=reps)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "degree-graph"
        users = degree_dataset(folder, degrees)
        home = Path(tmp) / "home"
        build_index(str(folder), home=home)
        ws = get_workspace(str(folder), home=str(home))
        try:
            with http_clock() as http, model_server(0.0, process=True) as server:
                ctx = context(str(folder), home, server.spec())
                for degree in degrees:
                    user = users[str(degree)]
                    train_degree = int(ws.graph.user_item_times(ws.user_code(user))[0].size)
                    got = asyncio.run(_propagate(ws, ctx, user, reps, http))
                    own = summary(got["own_ms"])
                    result.rows.append(
                        {
                            "degree": degree,
                            "graph_degree": train_degree,
                            "propagations": len(got["calls"]),
                            "calls_min": min(got["calls"]),
                            "calls_max": max(got["calls"]),
                            "wire_calls_max": max(got["wire"]),
                            "tokens_mean": round(float(np.mean(got["tokens"])), 1),
                            "own_ms_p50": own["p50"],
                            "own_ms_max": own["max"],
                        }
                    )
        finally:
            ws.events.close()
    ok = all(r["calls_min"] == 1 == r["calls_max"] == r["wire_calls_max"] for r in result.rows)
    worst = max(r["calls_max"] for r in result.rows)
    result.targets.append(target("model calls per propagation, every degree", "== 1", worst, ok))
    finish(result, opts)
    return result
