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

from pydantic import BaseModel, Field

from evaluation.methods import METHODS
from evaluation.plots import (
    plot_k_sweep,
    plot_metrics,
    plot_pareto,
    plot_sparse,
    sparse_slice,
)
from evaluation.results import EvalError, RunResult, load_run, run_files
from evaluation.tables import (
    REFERENCE,
    PairedRow,
    groups,
    leading_table,
    markdown_table,
    paired_rows,
)

__all__ = ["Report", "build_report", "load_runs", "markdown_table", "paired_rows", "sparse_slice"]

logger = logging.getLogger(__name__)

_ORDER = {name: position for position, name in enumerate(METHODS)}


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


# --------------------------------------------------------------------------------- plots


def _main_runs(group: Sequence[RunResult]) -> list[RunResult]:
    """One run per method (the first without a k override)."""
    chosen: dict[str, RunResult] = {}
    for run in group:
        if run.k_override is None and run.method not in chosen:
            chosen[run.method] = run
    return list(chosen.values())


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
    for (dataset, candidates), group in groups(runs).items():
        main = _main_runs(group)
        tag = f"{dataset}-c{candidates}"
        label = f"{dataset}, {candidates} candidates"
        plots.append(plot_metrics(main, target / f"metrics-{tag}.png", label))
        plots.append(plot_k_sweep(group, target / f"k-sweep-{tag}.png", f"H@1 vs k, {label}"))
        plots.append(plot_pareto(main, target / f"pareto-{tag}.png", f"quality vs cost, {label}"))
        plots.append(plot_sparse(main, target / f"sparse-{tag}.png", f"sparse users, {label}"))
    markdown = _markdown(leading_table(runs, paired), table, plots, target)
    path = target / "report.md"
    path.write_text(markdown, encoding="utf-8")
    logger.info("wrote %s and %d plots", path, len(plots))
    return Report(
        runs=[r.run for r in runs], table=table, paired=paired, markdown_path=path, plots=plots
    )


def _markdown(lead: str, table: str, plots: Sequence[Path], target: Path) -> str:
    lines = [
        "# MemRec benchmark report",
        "",
        f"{REFERENCE} against the strongest baseline of each dataset (the baseline with the best "
        "validation H@1; every baseline and every offline weight is tuned on the validation "
        "target only). Ties are broken the same way for every method: a seeded hash of (seed 0, "
        "user, item).",
        "",
        lead,
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
