"""Reports: one table over runs, paired tests against memrec, real PNG plots, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.metrics import METRICS, summarize
from evaluation.report import build_report, load_runs, markdown_table, paired_rows, sparse_slice
from evaluation.results import EvalError, RunResult
from evaluation.tables import write_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_USERS = 200


def _run(method: str, hit_rate: float, *, k: int | None = None, seed: int = 0) -> RunResult:
    rng = np.random.default_rng(seed)
    ranks = np.where(rng.random(N_USERS) < hit_rate, 1, rng.integers(2, 11, N_USERS)).tolist()
    agentic = method not in ("mostpop", "bpr")
    suffix = f"-k{k}" if k is not None else ""
    return RunResult(
        run=f"ml-100k-{method}{suffix}-c10",
        method=method,
        family="agentic" if agentic else "classical",
        dataset="ml-100k",
        roles="offline" if agentic else None,
        candidates=10,
        k=(k or 16) if agentic else None,
        k_override=k,
        config={},
        n_users=N_USERS,
        metrics=summarize(ranks),
        tokens_per_request=1500.0 if agentic else 0.0,
        latency_ms_p50=12.5,
        wall_s=3.0,
        users=[str(u) for u in range(N_USERS)],
        ranks=ranks,
        train_degree=[3 if u < 50 else 40 for u in range(N_USERS)],
    )


@pytest.fixture
def results(tmp_path: Path) -> Path:
    runs = [
        _run("mostpop", 0.3, seed=1),
        _run("bpr", 0.35, seed=2),
        _run("memrec", 0.6, seed=3),
        _run("naive-collab", 0.45, seed=4),
        _run("isolated", 0.4, seed=5),
    ]
    for i, k in enumerate((4, 8, 32, 64)):
        runs.append(_run("memrec", 0.5 + 0.02 * i, k=k, seed=10 + i))
        runs.append(_run("naive-collab", 0.5 - 0.05 * i, k=k, seed=20 + i))
    for run in runs:
        write_run(run, tmp_path)
    return tmp_path


def test_report_builds_a_table_and_real_pngs(results: Path) -> None:
    report = build_report([results])
    table = report.table
    assert table.count("\n") == 2 + 13 - 1  # header, rule, 13 runs
    for name in (*METRICS, "tokens/req", "p50 ms", "mostpop", "naive-collab", "isolated"):
        assert name in table
    assert report.runs[0] == "ml-100k-mostpop-c10"  # classical rows first
    assert report.markdown_path.read_text().count("![") == 4
    assert {p.name for p in report.plots} == {
        "metrics-ml-100k-c10.png",
        "k-sweep-ml-100k-c10.png",
        "pareto-ml-100k-c10.png",
        "sparse-ml-100k-c10.png",
    }
    for plot in report.plots:
        data = plot.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_paired_test_compares_memrec_with_every_other_run_on_the_same_users(
    results: Path,
) -> None:
    runs = load_runs([results])
    rows = paired_rows(runs)
    assert len(rows) == len(runs) - 1
    assert all(row.reference == "ml-100k-memrec-c10" for row in rows)
    by_other = {row.other: row for row in rows}
    versus_pop = by_other["ml-100k-mostpop-c10"].result
    assert versus_pop.mean_diff > 0.2 and versus_pop.p_value < 0.01
    assert versus_pop.lo <= versus_pop.mean_diff <= versus_pop.hi
    assert "p=" in markdown_table(runs, rows)


def test_sparse_slice_averages_only_sparse_users() -> None:
    run = _run("memrec", 0.5)
    run.ranks = [1] * 50 + [2] * 150  # the 50 sparse users all hit, nobody else does
    run.metrics = summarize(run.ranks)
    summary = sparse_slice(run)
    assert summary is not None and summary.mean == 1.0
    run.train_degree = [40] * N_USERS
    assert sparse_slice(run) is None


def test_report_refuses_old_formats_and_empty_folders(results: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalError, match="no run JSON files"):
        build_report([empty])
    raw = json.loads((results / "ml-100k-memrec-c10.json").read_text())
    raw["format_version"] = 0
    (results / "old.json").write_text(json.dumps(raw))
    with pytest.raises(EvalError, match="format_version 0"):
        build_report([results])
    with pytest.raises(EvalError, match="not a folder"):
        build_report([tmp_path / "missing"])


def test_the_report_leads_with_the_strongest_baseline_chosen_on_validation(tmp_path: Path) -> None:
    from evaluation.tables import leading_table, strongest_baselines

    bpr = _run("bpr", 0.55, seed=2)  # better on test ...
    bpr.config = {"valid_h1": 0.40, "valid_mrr": 0.6}
    mostpop = _run("mostpop", 0.35, seed=1)  # ... but mostpop was better on validation
    mostpop.config = {"valid_h1": 0.45, "valid_mrr": 0.6}
    memrec = _run("memrec", 0.6, seed=3)
    runs = [bpr, mostpop, memrec]
    assert strongest_baselines(runs)[("ml-100k", 10)] is mostpop
    lead = leading_table(runs, paired_rows(runs)).splitlines()[2]
    assert "mostpop (0.450)" in lead and f"{memrec.metrics['H@1'].mean:.3f}" in lead
    assert "p=" in lead  # memrec minus mostpop, paired on the same users
    for run in runs:
        write_run(run, tmp_path)
    text = build_report([tmp_path]).markdown_path.read_text()
    assert text.index("strongest baseline") < text.index("| dataset | method |")
