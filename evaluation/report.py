"""Combine run JSONs into one Markdown table and PNG plots (BENCHMARK.md, "Reports").

Plots, per dataset and candidate count: every metric per method with its interval; H@1 against the
neighbour count k for ``memrec`` and ``naive-collab`` (the overload figure); H@1 against tokens per
request (the Pareto view); H@1 on sparse users (at most 5 train interactions). The table adds a
paired test of ``memrec`` against every other method on the users both ran.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (headless machines, CI)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

from evaluation.methods import METHODS  # noqa: E402
from evaluation.metrics import (  # noqa: E402
    METRICS,
    MetricSummary,
    PairedResult,
    bootstrap_ci,
    paired_test,
    user_metrics,
)
from evaluation.runner import EvalError, RunResult, load_run, run_files  # noqa: E402

logger = logging.getLogger(__name__)

REFERENCE = "memrec"
SWEEP_METHODS = ("memrec", "naive-collab")
SPARSE_MAX_TRAIN = 5
_ORDER = {name: position for position, name in enumerate(METHODS)}


class PairedRow(BaseModel):
    """H@1 of the reference method minus another method's, on the users both ran."""

    dataset: str
    candidates: int
    reference: str = Field(description="run name of the memrec run")
    other: str = Field(description="run name of the compared run")
    n_users: int
    result: PairedResult


class Report(BaseModel):
    """What ``build_report`` produced."""

    runs: list[str] = Field(description="run names in table order")
    table: str = Field(description="the Markdown table")
    paired: list[PairedRow] = Field(default_factory=list)
    markdown_path: Path
    plots: list[Path] = Field(default_factory=list)


# ---------------------------------------------------------------------------------- load


def load_runs(dirs: Iterable[str | Path]) -> list[RunResult]:
    """Every run JSON in ``dirs`` in table order; EvalError for an old format or no runs."""
    runs: list[RunResult] = []
    folders = [Path(d) for d in dirs]
    for folder in folders:
        if not folder.is_dir():
            raise EvalError(f"{folder} is not a folder; pass folders written by `memrec eval`")
        runs.extend(load_run(path) for path in run_files(folder))
    if not runs:
        shown = ", ".join(str(f) for f in folders)
        raise EvalError(f"no run JSON files in {shown}; run `memrec eval --out DIR` first")
    return sorted(runs, key=_sort_key)


def _sort_key(run: RunResult) -> tuple:
    return (
        run.dataset,
        run.candidates,
        run.family != "classical",
        _ORDER.get(run.method, len(_ORDER)),
        run.k_override or 0,
        run.run,
    )


# --------------------------------------------------------------------------------- table


def _cell(summary: MetricSummary) -> str:
    return f"{summary.mean:.3f} [{summary.lo:.3f}, {summary.hi:.3f}]"


def _paired_cell(row: PairedRow | None) -> str:
    if row is None:
        return ""
    r = row.result
    return f"{r.mean_diff:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}] p={r.p_value:.3g}"


def markdown_table(runs: Sequence[RunResult], paired: Sequence[PairedRow] = ()) -> str:
    """One row per run: metrics with 95% intervals, cost, failures, and memrec's paired lift."""
    by_other = {row.other: row for row in paired}
    head = [
        "dataset",
        "method",
        "roles",
        "k",
        "users",
        *METRICS,
        "tokens/req",
        "p50 ms",
        "failures",
        "wall s",
    ]
    if paired:
        head.append(f"{REFERENCE} - method, H@1 (paired)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        cells = [
            run.dataset,
            run.method,
            run.roles or "-",
            str(run.k) if run.k is not None else "-",
            str(run.n_users),
            *(_cell(run.metrics[m]) for m in METRICS),
            f"{run.tokens_per_request:.0f}",
            f"{run.latency_ms_p50:.1f}",
            str(run.failures),
            f"{run.wall_s:.1f}",
        ]
        if paired:
            cells.append(_paired_cell(by_other.get(run.run)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- paired


def _h1_by_user(run: RunResult) -> dict[str, float]:
    values = user_metrics(run.ranks)["H@1"]
    return dict(zip(run.users, values.tolist(), strict=True))


def paired_rows(runs: Sequence[RunResult]) -> list[PairedRow]:
    """Paired H@1 test of the main memrec run against every other run of its group."""
    rows: list[PairedRow] = []
    for (dataset, candidates), group in _groups(runs).items():
        references = [r for r in group if r.method == REFERENCE and r.k_override is None]
        if not references:
            continue
        reference = references[0]
        ref_h1 = _h1_by_user(reference)
        for other in group:
            if other is reference:
                continue
            other_h1 = _h1_by_user(other)
            common = sorted(set(ref_h1) & set(other_h1))
            if len(common) < 2:
                continue
            result = paired_test([ref_h1[u] for u in common], [other_h1[u] for u in common])
            rows.append(
                PairedRow(
                    dataset=dataset,
                    candidates=candidates,
                    reference=reference.run,
                    other=other.run,
                    n_users=len(common),
                    result=result,
                )
            )
    return rows


def _groups(runs: Sequence[RunResult]) -> dict[tuple[str, int], list[RunResult]]:
    groups: dict[tuple[str, int], list[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.dataset, run.candidates), []).append(run)
    return groups


# --------------------------------------------------------------------------------- plots


def _main_runs(group: Sequence[RunResult]) -> list[RunResult]:
    """One run per method (the first without a k override)."""
    chosen: dict[str, RunResult] = {}
    for run in group:
        if run.k_override is None and run.method not in chosen:
            chosen[run.method] = run
    return list(chosen.values())


def _errors(summaries: Sequence[MetricSummary]) -> np.ndarray:
    return np.asarray([[s.mean - s.lo for s in summaries], [s.hi - s.mean for s in summaries]])


def plot_metrics(runs: Sequence[RunResult], path: Path, title: str) -> Path:
    """Grouped bars: every metric per method, with 95% bootstrap error bars."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(runs) + 3), 4.5))
    width = 0.8 / max(len(runs), 1)
    x = np.arange(len(METRICS))
    for offset, run in enumerate(runs):
        summaries = [run.metrics[m] for m in METRICS]
        ax.bar(
            x + offset * width,
            [s.mean for s in summaries],
            width,
            yerr=_errors(summaries),
            capsize=2,
            label=run.method,
            color=plt.get_cmap("tab20")(offset % 20),  # distinct colours beyond ten methods
        )
    ax.set_xticks(x + width * (len(runs) - 1) / 2, METRICS)
    ax.set_ylabel("mean over users (95% CI)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncols=2)
    return _save(fig, path)


def plot_k_sweep(group: Sequence[RunResult], path: Path, title: str) -> Path:
    """H@1 against k for memrec and naive-collab (one line each, with error bars)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in SWEEP_METHODS:
        points: dict[int, MetricSummary] = {}
        for run in group:
            if run.method == method and run.k is not None:
                if run.k_override is not None or run.k not in points:
                    points[run.k] = run.metrics["H@1"]
        if points:
            ks = sorted(points)
            summaries = [points[k] for k in ks]
            ax.errorbar(
                ks,
                [s.mean for s in summaries],
                yerr=_errors(summaries),
                marker="o",
                capsize=3,
                label=method,
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("curated neighbours k")
    ax.set_ylabel("H@1 (95% CI)")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    else:
        _note(ax, "no memrec / naive-collab runs")
    return _save(fig, path)


def plot_pareto(runs: Sequence[RunResult], path: Path, title: str) -> Path:
    """H@1 against tokens per request: the quality / cost view."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in runs:
        h1 = run.metrics["H@1"]
        ax.errorbar([run.tokens_per_request], [h1.mean], yerr=_errors([h1]), marker="o", capsize=3)
        ax.annotate(
            run.method,
            (run.tokens_per_request, h1.mean),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel("tokens per request (all model calls)")
    ax.set_ylabel("H@1 (95% CI)")
    ax.set_title(title)
    return _save(fig, path)


def sparse_slice(run: RunResult, max_train: int = SPARSE_MAX_TRAIN) -> MetricSummary | None:
    """H@1 with its interval over users with at most ``max_train`` train interactions."""
    values = user_metrics(run.ranks)["H@1"]
    mask = np.asarray(run.train_degree) <= max_train
    if not mask.any():
        return None
    return bootstrap_ci(values[mask])


def plot_sparse(runs: Sequence[RunResult], path: Path, title: str) -> Path:
    """H@1 per method on sparse users (at most 5 train interactions)."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(runs) + 2), 4))
    slices = [(run, sparse_slice(run)) for run in runs]
    shown = [(run, s) for run, s in slices if s is not None]
    if shown:
        summaries = [s for _, s in shown]
        ax.bar(
            [r.method for r, _ in shown],
            [s.mean for s in summaries],
            yerr=_errors(summaries),
            capsize=3,
        )
        n = int(np.sum(np.asarray(shown[0][0].train_degree) <= SPARSE_MAX_TRAIN))
        ax.set_title(f"{title} ({n} users)")
        ax.tick_params(axis="x", labelrotation=45)
    else:
        ax.set_title(title)
        _note(ax, f"no evaluated user has <= {SPARSE_MAX_TRAIN} train interactions")
    ax.set_ylabel("H@1 (95% CI)")
    return _save(fig, path)


def _note(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------- build


def build_report(dirs: Sequence[str | Path], out: str | Path | None = None) -> Report:
    """Combine every run in ``dirs``; write report.md and the PNGs into ``out`` (first dir)."""
    if not dirs:
        raise EvalError("pass at least one results folder")
    runs = load_runs(dirs)
    target = Path(out) if out is not None else Path(dirs[0])
    target.mkdir(parents=True, exist_ok=True)
    paired = paired_rows(runs)
    table = markdown_table(runs, paired)
    plots: list[Path] = []
    for (dataset, candidates), group in _groups(runs).items():
        main = _main_runs(group)
        tag = f"{dataset}-c{candidates}"
        label = f"{dataset}, {candidates} candidates"
        plots.append(plot_metrics(main, target / f"metrics-{tag}.png", label))
        plots.append(plot_k_sweep(group, target / f"k-sweep-{tag}.png", f"H@1 vs k, {label}"))
        plots.append(plot_pareto(main, target / f"pareto-{tag}.png", f"quality vs cost, {label}"))
        plots.append(plot_sparse(main, target / f"sparse-{tag}.png", f"sparse users, {label}"))
    markdown = _markdown(table, plots, target)
    path = target / "report.md"
    path.write_text(markdown, encoding="utf-8")
    logger.info("wrote %s and %d plots", path, len(plots))
    return Report(
        runs=[r.run for r in runs], table=table, paired=paired, markdown_path=path, plots=plots
    )


def _markdown(table: str, plots: Sequence[Path], target: Path) -> str:
    lines = [
        "# MemRec benchmark report",
        "",
        "Metrics are means over users with 95% bootstrap intervals; failed rankings count as "
        f"misses. The last column is {REFERENCE}'s H@1 minus the method's on the same users "
        "(paired bootstrap interval, sign-flip permutation p-value).",
        "",
        table,
        "",
    ]
    lines += [f"![{p.stem}]({p.relative_to(target)})" for p in plots]
    return "\n".join(lines) + "\n"
