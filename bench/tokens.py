"""Model calls and tokens per recommend request, per repeat request and per interaction.

Runs the production recommend and propagate graphs against the OpenAI-compatible test
server (in-process here: timing does not matter, and its per-task call counters cross-check the
usage the nodes report). Everything runs on an isolated clone of the indexed store (in-memory
memories, fresh event log), so the benchmark's index is never written.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchOptions, BenchResult, finish, new_result, summary, target
from bench.servers import ModelServer, model_server
from bench.setup import context, ensure_index, sample_users, workspace
from graph.propagate import graph as propagate_graph
from graph.recommend import graph as recommend_graph
from memory_store.workspace import Workspace, register_workspace
from nodes.record import record_interaction

NAME = "tokens"
PAPER_TOKENS_PER_USER = 6400  # about 5,100 in + 1,300 out over three calls (paper)
REQUEST_LIMIT = 3000
PROPAGATION_LIMIT = 1500
METHOD = (
    "tokens_in / tokens_out as reported by the nodes' CallUsage (the server's usage block, "
    "counted with prompts/tokens.py); calls cross-checked against the test server's own count "
    "per task. tokens_in are the real prompts at the default budgets (k=16, tau=1800, N_f=7, "
    "fanout_cap=8, 10 candidates); tokens_out are the test server's canned valid answers, shorter "
    "than a real model's rationales, so out-token figures are a lower bound."
)


def _usage_totals(usage: dict[str, Any]) -> tuple[int, int, int]:
    calls = sum(u.calls for u in usage.values())
    return (
        calls,
        sum(u.tokens_in for u in usage.values()),
        sum(u.tokens_out for u in usage.values()),
    )


async def _requests(ctx: Any, users: list[str], server: ModelServer) -> dict[str, list[float]]:
    assert server.server is not None
    out: dict[str, list[float]] = {
        k: []
        for k in (
            "calls",
            "in",
            "out",
            "server_calls",
            "r_calls",
            "r_in",
            "r_out",
            "r_server",
            "synthesize_in",
            "synthesize_out",
            "rank_in",
            "rank_out",
        )
    }
    for user in users:
        for prefix in ("", "r_"):
            server.server.clear()
            result = await recommend_graph.ainvoke({"user_id": user}, context=ctx)
            calls, t_in, t_out = _usage_totals(result["usage"])
            out[f"{prefix}calls"].append(calls)
            out[f"{prefix}in" if prefix else "in"].append(t_in)
            out[f"{prefix}out" if prefix else "out"].append(t_out)
            key = "r_server" if prefix else "server_calls"
            out[key].append(sum(server.server.calls.values()))
            if not prefix:
                for node in ("synthesize", "rank"):
                    usage = result["usage"].get(node)
                    out[f"{node}_in"].append(usage.tokens_in if usage else 0)
                    out[f"{node}_out"].append(usage.tokens_out if usage else 0)
    return out


async def _propagations(
    ws: Workspace, ctx: Any, users: list[str], server: ModelServer
) -> dict[str, list[float]]:
    assert server.server is not None
    out: dict[str, list[float]] = {"calls": [], "in": [], "out": [], "server_calls": []}
    rng = np.random.default_rng(3)
    for user in users:
        seen = set(ws.graph.user_item_times(ws.user_code(user))[0].tolist())
        unseen = [i for i in rng.permutation(ws.dataset.n_items)[:200] if int(i) not in seen]
        event = record_interaction(ws, user, ws.dataset.item_ids[int(unseen[0])])
        server.server.clear()
        report = (await propagate_graph.ainvoke({"event": event}, context=ctx))["report"]
        out["calls"].append(report.usage.calls)
        out["in"].append(report.usage.tokens_in)
        out["out"].append(report.usage.tokens_out)
        out["server_calls"].append(server.server.calls["propagate"])
    return out


def _row(
    dataset: str,
    what: str,
    calls: list[float],
    t_in: list[float],
    t_out: list[float],
    server_calls: list[float],
) -> dict[str, Any]:
    total = [a + b for a, b in zip(t_in, t_out, strict=True)]
    s = summary(total)
    return {
        "dataset": dataset,
        "what": what,
        "calls_max": max(calls),
        "calls_mean": round(float(np.mean(calls)), 2),
        "server_calls_max": max(server_calls),
        "tokens_in_mean": round(float(np.mean(t_in)), 1),
        "tokens_out_mean": round(float(np.mean(t_out)), 1),
        "total_mean": s["mean"],
        "total_p99": s["p99"],
        "total_max": s["max"],
        "n": s["n"],
    }


def _dataset_rows(
    result: BenchResult, dataset: str, req: dict[str, Any], prop: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Append one dataset's rows to ``result``; the request, repeat and propagation rows."""
    first = _row(dataset, "request", req["calls"], req["in"], req["out"], req["server_calls"])
    repeat = _row(
        dataset,
        "repeat request",
        req["r_calls"],
        req["r_in"],
        req["r_out"],
        req["r_server"],
    )
    propagation = _row(
        dataset, "propagation", prop["calls"], prop["in"], prop["out"], prop["server_calls"]
    )
    per_user = first["total_mean"] + propagation["total_mean"]
    result.rows += [first, repeat, propagation]
    for node in ("synthesize", "rank"):
        result.rows.append(
            {
                "dataset": dataset,
                "what": f"  of which {node}",
                "tokens_in_mean": round(float(np.mean(req[f"{node}_in"])), 1),
                "tokens_out_mean": round(float(np.mean(req[f"{node}_out"])), 1),
            }
        )
    result.rows.append(
        {
            "dataset": dataset,
            "what": "request + propagation (per user)",
            "calls_max": first["calls_max"] + propagation["calls_max"],
            "total_mean": round(per_user, 1),
        }
    )
    return first, repeat, propagation


def run(opts: BenchOptions) -> BenchResult:
    """Run the token benchmark and write ``tokens.json``."""
    n = opts.size(50, 20, 2)
    datasets = opts.datasets or (
        ["ml-100k"] if opts.quick or opts.smoke else ["ml-100k", "amazon-games"]
    )
    result = new_result(NAME, opts, METHOD, users=n, datasets=datasets)
    with model_server(0.0, process=False) as server, tempfile.TemporaryDirectory() as tmp:
        for dataset in datasets:
            ensure_index(dataset, opts)
            home = Path(tmp) / dataset
            clone = workspace(dataset, opts).clone(home / "clone")
            register_workspace(clone, dataset, home=str(home))
            try:
                ctx = context(dataset, home, server.spec())
                users = sample_users(clone, n, seed=5)
                req = asyncio.run(_requests(ctx, users, server))
                prop = asyncio.run(_propagations(clone, ctx, users, server))
            finally:
                clone.events.close()
            first, repeat, propagation = _dataset_rows(result, dataset, req, prop)
            _targets(result, dataset, first, repeat, propagation)
    result.rows.append(
        {
            "dataset": "paper",
            "what": "three calls per user (reference)",
            "calls_max": 3,
            "tokens_in_mean": 5100.0,
            "tokens_out_mean": 1300.0,
            "total_mean": float(PAPER_TOKENS_PER_USER),
        }
    )
    finish(result, opts)
    return result


def _targets(
    result: BenchResult,
    dataset: str,
    first: dict[str, Any],
    repeat: dict[str, Any],
    propagation: dict[str, Any],
) -> None:
    result.targets += [
        target(
            f"{dataset} model calls per request (max)",
            "<= 2",
            first["calls_max"],
            first["calls_max"] <= 2 and first["server_calls_max"] <= 2,
        ),
        target(
            f"{dataset} model calls per repeat request (max)",
            "<= 1",
            repeat["calls_max"],
            repeat["calls_max"] <= 1 and repeat["server_calls_max"] <= 1,
        ),
        target(
            f"{dataset} model calls per propagation (every one)",
            "== 1",
            propagation["calls_max"],
            propagation["calls_max"] == 1
            and propagation["calls_mean"] == 1
            and propagation["server_calls_max"] == 1,
        ),
        target(
            f"{dataset} tokens per request (p99)",
            f"<= {REQUEST_LIMIT}",
            first["total_p99"],
            first["total_p99"] <= REQUEST_LIMIT,
        ),
        target(
            f"{dataset} tokens per propagation (p99)",
            f"<= {PROPAGATION_LIMIT}",
            propagation["total_p99"],
            propagation["total_p99"] <= PROPAGATION_LIMIT,
        ),
    ]
