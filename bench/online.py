"""Online overhead per recommend request: our own time, model time excluded.

For each dataset and each role set (offline roles; a zero-latency OpenAI-compatible test server in
a subprocess) the bench sends one recommend request per sampled user (distinct users, so the facet
cache never answers) after a few warm-up requests, and reports p50 / p99 of:

- ``nodes_ms``: the sum over curate, synthesize and rank of node wall time minus the node's model
  HTTP round-trip time (our code, LangChain and the openai client included);
- ``nodes_cpu_ms``: the same nodes' CPU time on the event-loop thread (``time.thread_time``), which
  other processes loading the machine barely move; with the offline roles it is the nodes' work;
- ``e2e_ms``: ``graph.ainvoke`` wall time minus all model HTTP time;
- ``framework_ms``: ``e2e_ms - nodes_ms``, LangGraph's own per-request cost;
- ``http_ms``: the model HTTP round trips themselves (excluded from the above);
- ``cpu_ms``: CPU time of this process (all threads) during the request. The model server runs in
  another process, so this is our own work only, and unlike wall time it barely moves when other
  processes load the machine.

A separate cProfile pass (not timed) lists where our time goes.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from bench.common import BenchOptions, BenchResult, finish, new_result, summary, target
from bench.servers import model_server
from bench.setup import context, ensure_index, sample_users, workspace
from bench.timing import HttpClock, NodeClock, cpu_profile, http_clock, timed_recommend_graph

NAME = "online"
DATASETS = ["ml-100k", "amazon-games"]
TARGET_P99 = {"ml-100k": 20.0, "amazon-games": 50.0}
METHOD = (
    "Per request: node wall time (wrapped node functions of the production builder) minus the "
    "model HTTP round-trip time measured on the model client's transport "
    "(roles.models.PerLoopTransport.handle_async_request); e2e = graph.ainvoke wall time minus all "
    "HTTP round trips; framework = e2e - sum of nodes. The test server runs in a subprocess with "
    "0 ms latency, so its handling time is inside the excluded round trips and never competes for "
    "our GIL. Distinct users per request (cold facet cache); warm-up requests first."
)


async def _requests(
    graph: Any, ctx: Any, users: list[str], clock: NodeClock, http: HttpClock
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "nodes", "nodes_cpu", "e2e", "framework", "cpu", "http", "curate", "synthesize", "rank"
        )
    }  # fmt: skip
    for user in users:
        clock.reset()
        http.reset()
        cpu = time.process_time()
        started = time.perf_counter()
        await graph.ainvoke({"user_id": user}, context=ctx)
        e2e = (time.perf_counter() - started - http.seconds) * 1000.0
        samples["cpu"].append((time.process_time() - cpu) * 1000.0)
        own = clock.own_ms()
        nodes = sum(own.values())
        samples["nodes"].append(nodes)
        samples["nodes_cpu"].append(sum(clock.cpu_ms().values()))
        samples["e2e"].append(e2e)
        samples["framework"].append(e2e - nodes)
        samples["http"].append(http.seconds * 1000.0)
        for name in ("curate", "synthesize", "rank"):
            samples[name].append(own.get(name, 0.0))
    return samples


async def _invoke_all(graph: Any, ctx: Any, users: list[str]) -> None:
    for user in users:
        await graph.ainvoke({"user_id": user}, context=ctx)


def run(opts: BenchOptions) -> BenchResult:
    """Run the online overhead benchmark and write ``online.json``."""
    n = opts.size(300, 100, 5)
    warm = opts.size(10, 5, 2)
    datasets = opts.datasets or DATASETS
    result = new_result(NAME, opts, METHOD, requests_per_cell=n, warmup=warm, datasets=datasets)
    clock = NodeClock()
    with http_clock() as http, model_server(0.0, process=True) as server:
        clock.http = http
        graph = timed_recommend_graph(clock)
        for dataset in datasets:
            indexed = ensure_index(dataset, opts)
            result.config[f"index_{dataset}"] = indexed.model_dump()
            ws = workspace(dataset, opts)
            users = sample_users(ws, n, seed=1, skip=warm)
            warmup = sample_users(ws, warm, seed=1)
            for roles, spec in (("offline", "offline"), ("test-server", server.spec())):
                ctx = context(dataset, opts.home, spec)
                asyncio.run(_requests(graph, ctx, warmup, clock, http))
                samples = asyncio.run(_requests(graph, ctx, users, clock, http))
                _add_rows(result, dataset, roles, samples)
                if not opts.smoke:
                    profile_users = sample_users(ws, opts.size(30, 15, 2), seed=1, skip=warm + n)
                    prof_ctx = context(dataset, opts.home, spec)
                    result.config[f"profile_{dataset}_{roles}"] = cpu_profile(
                        functools.partial(_invoke_all, graph, prof_ctx, profile_users),
                        len(profile_users),
                    )
    _targets(result)
    result.notes.append(
        "framework_ms is LangGraph's own cost per request (about 3 ms for this graph); it is "
        "reported separately and included in e2e_ms."
    )
    finish(result, opts)
    return result


def _add_rows(
    result: BenchResult, dataset: str, roles: str, samples: dict[str, list[float]]
) -> None:
    for metric in (
        "nodes", "nodes_cpu", "e2e", "framework", "cpu", "curate", "synthesize", "rank", "http"
    ):  # fmt: skip
        s = summary(samples[metric])
        result.rows.append(
            {
                "dataset": dataset,
                "roles": roles,
                "metric": f"{metric}_ms",
                "p50": s["p50"],
                "p99": s["p99"],
                "mean": s["mean"],
                "max": s["max"],
                "n": s["n"],
            }
        )


def _row(result: BenchResult, dataset: str, roles: str, metric: str) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in result.rows
            if r["dataset"] == dataset and r["roles"] == roles and r["metric"] == metric
        ),
        None,
    )


def _targets(result: BenchResult) -> None:
    row = _row(result, "ml-100k", "offline", "nodes_cpu_ms")
    if row is not None:
        result.targets.append(
            target("ml-100k offline nodes_cpu_ms p50", "<= 3 ms", row["p50"], row["p50"] <= 3)
        )
    for dataset in result.config["datasets"]:
        for metric in ("nodes_ms", "e2e_ms", "cpu_ms"):
            row = _row(result, dataset, "offline", metric)
            if row is None:
                continue
            if dataset == "ml-100k":
                result.targets.append(
                    target(
                        f"{dataset} offline {metric} p50", "<= 5 ms", row["p50"], row["p50"] <= 5
                    )
                )
            limit = TARGET_P99.get(dataset)
            if limit is not None:
                result.targets.append(
                    target(
                        f"{dataset} offline {metric} p99",
                        f"<= {limit:g} ms",
                        row["p99"],
                        row["p99"] <= limit,
                    )
                )
