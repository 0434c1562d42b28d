"""Index build time and peak RSS for the benchmark datasets and synthetic graphs of growing size.

Every build runs in its own subprocess (``bench/_index_child.py``) into a fresh temporary home:
the child reports its own peak RSS (``VmHWM``) at its end. Neither ``getrusage`` figure isolates
one build: the parent's ``RUSAGE_CHILDREN`` is a maximum over every child waited for, and Linux
carries ``ru_maxrss`` across ``execve``, so a child forked from the (large) benchmark process
starts with the parent's high-water mark. Synthetic graphs (``bench/synthetic.py``) keep 20
interactions per user and 50 per item, so users, items and interactions grow together;
``us_per_interaction`` shows whether the cost grows linearly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, BenchOptions, BenchResult, finish, new_result, reference, target
from bench.synthetic import power_law_dataset

NAME = "index"
DATASETS = ["ml-100k", "amazon-scientific", "amazon-games"]
SYNTHETIC = [250_000, 500_000, 1_000_000]
METHOD = (
    "One subprocess per build, fresh temporary home, cold imports. wall_s = the child's wall "
    "time seen by the parent (interpreter start and imports included); build_s = build_index "
    "alone; cpu_s = its CPU (all threads, its loader process too), x_ref = cpu_s / the same-run "
    "reference workload; "
    "peak_rss_mb = the child's own VmHWM (/proc/self/status); loader_rss_mb = the VmHWM of "
    "the process a first build loads the embedded Chroma store with (the RSS target is on "
    "their sum, both may peak at once). Synthetic graphs are "
    "generic-format folders written with numpy before the timer starts."
)


def _build(dataset: str, home: Path, data_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench._index_child", dataset, str(home), str(data_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"indexing {dataset} failed:\n{proc.stderr[-2000:]}")
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    payload["wall_s"] = round(wall, 2)
    return payload


def _row(name: str, payload: dict[str, Any], interactions: int, ref_ms: float) -> dict[str, Any]:
    report = payload["report"]
    return {
        "dataset": name,
        "users": report["users"],
        "items": report["items"],
        "interactions": interactions,
        "train_interactions": report["train_interactions"],
        "wall_s": payload["wall_s"],
        "build_s": payload["build_s"],
        "cpu_s": payload.get("cpu_s"),
        "x_ref": round(payload.get("cpu_s", 0.0) * 1000.0 / ref_ms, 1),
        "peak_rss_mb": payload["peak_rss_mb"],
        "loader_rss_mb": payload.get("loader_peak_rss_mb") or 0.0,
        "us_per_interaction": round(payload["build_s"] * 1e6 / max(1, interactions), 1),
    }


def run(opts: BenchOptions) -> BenchResult:
    """Run the index benchmark and write ``index.json``."""
    if opts.smoke:
        datasets, sizes = [], [3_000]
    elif opts.quick:
        datasets, sizes = ["ml-100k", "amazon-scientific"], [25_000, 50_000, 100_000]
    else:
        datasets, sizes = DATASETS, SYNTHETIC
    datasets = opts.datasets if opts.datasets is not None else datasets
    result = new_result(NAME, opts, METHOD, datasets=datasets, synthetic_sizes=sizes)
    ref = reference(result)
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in datasets:
            home = Path(tmp) / f"home-{dataset}"
            payload = _build(dataset, home, opts.data_dir)
            result.rows.append(_row(dataset, payload, payload["interactions"], ref))
        for size in sizes:
            folder = Path(tmp) / f"synthetic-{size}"
            shape = power_law_dataset(folder, size, seed=size)
            payload = _build(str(folder), Path(tmp) / f"home-{size}", opts.data_dir)
            result.rows.append(_row(f"synthetic-{size:,}", payload, shape["interactions"], ref))
    _targets(result)
    finish(result, opts)
    return result


def _targets(result: BenchResult) -> None:
    games = next((r for r in result.rows if r["dataset"] == "amazon-games"), None)
    if games is not None:
        result.targets.append(
            target("amazon-games index time (s)", "<= 60", games["wall_s"], games["wall_s"] <= 60)
        )
        rss = games["peak_rss_mb"] + games["loader_rss_mb"]
        result.targets.append(
            target("amazon-games index peak RSS, with its loader (MB)", "<= 2048", rss, rss <= 2048)
        )
    synth = [r for r in result.rows if r["dataset"].startswith("synthetic")]
    if len(synth) >= 2:
        ratio = synth[-1]["us_per_interaction"] / max(synth[0]["us_per_interaction"], 1e-9)
        result.targets.append(
            target(
                "synthetic: time per interaction, largest / smallest",
                "roughly linear (<= 1.5)",
                ratio,
                ratio <= 1.5,
            )
        )
