"""Smoke test of the benchmark suite: every bench runs on tiny settings and writes valid JSON.

No timing is asserted (figures come from ``python -m bench``); the structural facts each bench
reports (model calls per request / propagation, rows per setting) are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import BENCHMARKS, run_benchmark
from bench.common import BenchOptions, BenchResult, pct
from tests.support.fixtures import data_dir, indexed_home

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def _opts(tmp_path: Path, **overrides: object) -> BenchOptions:
    values: dict[str, object] = {
        "smoke": True,
        "out": tmp_path / "results",
        "home": indexed_home(),  # the test session's ml-100k index, built once
        "data_dir": data_dir(),
        "datasets": ["ml-100k"],
    }
    values.update(overrides)
    return BenchOptions.model_validate(values)


def _written(opts: BenchOptions, name: str) -> BenchResult:
    path = opts.out / f"{name}.json"
    result = BenchResult.model_validate(json.loads(path.read_text()))
    assert result.bench == name and result.mode == "smoke" and result.rows and result.method
    return result


def test_percentile_is_interpolated() -> None:
    assert pct([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert pct([0.0, 10.0], 99) == 9.9


def test_online(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("online", opts)
    result = _written(opts, "online")
    cells = {(r["roles"], r["metric"]) for r in result.rows}
    for roles in ("offline", "test-server"):
        for metric in ("nodes_ms", "nodes_cpu_ms", "e2e_ms", "framework_ms", "cpu_ms", "http_ms"):
            assert (roles, metric) in cells
    offline_http = next(
        r for r in result.rows if r["metric"] == "http_ms" and r["roles"] == "offline"
    )
    assert offline_http["max"] == 0.0  # the offline roles make no HTTP call
    assert all(r["n"] == 5 for r in result.rows)


def test_tokens(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("tokens", opts)
    rows = {r["what"]: r for r in _written(opts, "tokens").rows if r["dataset"] == "ml-100k"}
    assert rows["request"]["calls_max"] == 2 == rows["request"]["server_calls_max"]
    assert rows["repeat request"]["calls_max"] == 1  # facets from the cache
    assert rows["propagation"]["calls_max"] == 1 == rows["propagation"]["server_calls_max"]
    assert rows["request"]["tokens_in_mean"] > 0


def test_propagation_degree(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("propagation_degree", opts)
    rows = _written(opts, "propagation_degree").rows
    assert [r["degree"] for r in rows] == [r["graph_degree"] for r in rows] == [5, 50, 500]
    assert all(r["calls_max"] == r["wire_calls_max"] == 1 for r in rows)


def test_throughput(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("throughput", opts)
    rows = _written(opts, "throughput").rows
    assert [r["concurrency"] for r in rows] == [1, 4]
    assert all(r["calls_per_request"] == 2.0 and r["requests_per_s"] > 0 for r in rows)


def test_llm_cpu(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("llm_cpu", opts)
    result = _written(opts, "llm_cpu")
    assert [r["event_loop"] for r in result.rows] == ["uvloop", "asyncio"]
    assert all(r["thread_hops_per_request"] == 0 for r in result.rows)  # none on the online path
    assert result.config["transport"] == "aiohttp"


def test_propagation(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("propagation", opts)
    rows = _written(opts, "propagation").rows
    drains = [r for r in rows if r["what"].startswith("drain")]
    assert [(r["what"], r["in_flight"]) for r in drains] == [
        ("drain offline", 1),
        ("drain offline", 8),
        ("drain 200 ms model", 1),
        ("drain 200 ms model", 8),
    ]
    assert [r["jobs"] for r in drains] == [6, 6, 4, 8]  # every recorded job ran, once
    (stale,) = [r for r in rows if r["what"].startswith("staleness")]
    assert stale["done_fraction"] == 1.0 and stale["staleness_p95_s"] >= 0


def test_index(tmp_path: Path) -> None:
    opts = _opts(tmp_path, datasets=[])
    run_benchmark("index", opts)
    (row,) = _written(opts, "index").rows
    assert row["dataset"] == "synthetic-3,000" and row["interactions"] > 2000
    assert row["peak_rss_mb"] > 50 and row["build_s"] > 0


def test_chroma(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("chroma", opts)
    rows = _written(opts, "chroma").rows
    assert {(r["store"], r["operation"]) for r in rows} == {
        (store, op)
        for store in ("embedded", "server")
        for op in ("get", "get_many(16)", "search(k=20)", "CAS put")
    }


def test_catalogue(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("catalogue", opts)
    (row,) = _written(opts, "catalogue").rows
    assert row["dataset"] == "ml-100k" and row["items"] == 1682 and row["has_eras"]
    assert row["build_s"] > 0 and row["load_s"] > 0 and row["read_ms"] > 0


def test_screen(tmp_path: Path) -> None:
    opts = _opts(tmp_path)
    run_benchmark("screen", opts)
    result = _written(opts, "screen")
    rows = {r["mode"]: r for r in result.rows}
    assert rows["natural"]["events"] == rows["injected"]["events"] > 0
    assert rows["natural"]["refused_fraction"] == 0.0  # a prompt-following model: nothing refused
    assert rows["injected"]["refused_fraction"] == 1.0  # injected instructions: all refused


def test_unknown_benchmark_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="accepted online"):
        run_benchmark("nope", _opts(tmp_path))
    assert "online" in BENCHMARKS


def test_module_entry_point_lists_benchmarks() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == list(BENCHMARKS)
