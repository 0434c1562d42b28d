"""The report's PNG plots: metrics per method, H@1 against k, quality against cost, sparse users."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window (headless machines, CI)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from evaluation.metrics import METRICS, MetricSummary, bootstrap_ci, user_metrics  # noqa: E402
from evaluation.results import RunResult  # noqa: E402

SWEEP_METHODS = ("memrec", "naive-collab")
SPARSE_MAX_TRAIN = 5


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
