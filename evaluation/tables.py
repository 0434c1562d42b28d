"""The results table of one or more runs (Markdown), memrec's paired lift, and writing a run.

Light on purpose (no plotting): every run writes its JSON and its one-row table when it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from evaluation.metrics import METRICS, MetricSummary, PairedResult, paired_test, user_metrics
from evaluation.results import RunResult, atomic_write

REFERENCE = "memrec"


class PairedRow(BaseModel):
    """H@1 of the reference method minus another method's, on the users both ran."""

    dataset: str
    candidates: int
    reference: str = Field(description="run name of the memrec run")
    other: str = Field(description="run name of the compared run")
    n_users: int
    result: PairedResult


def _cell(summary: MetricSummary) -> str:
    return f"{summary.mean:.3f} [{summary.lo:.3f}, {summary.hi:.3f}]"


def _paired_cell(row: PairedRow | None) -> str:
    if row is None:
        return ""
    r = row.result
    return f"{r.mean_diff:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}] p={r.p_value:.3g}"


def markdown_table(runs: Sequence[RunResult], paired: Sequence[PairedRow] = ()) -> str:
    """One row per run: metrics, cost, failures, repairs, fallbacks, memrec's paired lift."""
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
        "repairs",
        "fallbacks",
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
            str(run.repairs),  # model replies repaired (malformed, cut off, fixed up)
            str(run.fallbacks),  # steps the offline role answered because the model could not
            f"{run.wall_s:.1f}",
        ]
        if paired:
            cells.append(_paired_cell(by_other.get(run.run)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def strongest_baselines(runs: Sequence[RunResult]) -> dict[tuple[str, int], RunResult]:
    """Per (dataset, candidates): the baseline with the best validation H@1 (then MRR).

    Chosen on validation, like every parameter, so the comparison is not picked on test.
    """
    best: dict[tuple[str, int], RunResult] = {}
    for key, group in groups(runs).items():
        tuned = [r for r in group if r.family == "classical" and "valid_h1" in r.config]
        if tuned:
            best[key] = max(tuned, key=lambda r: (r.config["valid_h1"], r.config["valid_mrr"]))
    return best


def leading_table(runs: Sequence[RunResult], paired: Sequence[PairedRow]) -> str:
    """The headline: memrec against the strongest baseline of each dataset, paired on users."""
    by_other = {row.other: row for row in paired}
    references = {
        key: next((r for r in g if r.method == REFERENCE and r.k_override is None), None)
        for key, g in groups(runs).items()
    }
    lines = [
        "| dataset | candidates | strongest baseline (validation H@1) | its H@1 | "
        f"{REFERENCE} H@1 | {REFERENCE} - strongest (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for key, base in strongest_baselines(runs).items():
        ref = references.get(key)
        mine = _cell(ref.metrics["H@1"]) if ref is not None else "-"
        lines.append(
            f"| {key[0]} | {key[1]} | {base.method} ({base.config['valid_h1']:.3f}) | "
            f"{_cell(base.metrics['H@1'])} | {mine} | {_paired_cell(by_other.get(base.run))} |"
        )
    return "\n".join(lines)


def _h1_by_user(run: RunResult) -> dict[str, float]:
    values = user_metrics(run.ranks)["H@1"]
    return dict(zip(run.users, values.tolist(), strict=True))


def paired_rows(runs: Sequence[RunResult]) -> list[PairedRow]:
    """Paired H@1 test of the main memrec run against every other run of its group."""
    rows: list[PairedRow] = []
    for (dataset, candidates), group in groups(runs).items():
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


def groups(runs: Sequence[RunResult]) -> dict[tuple[str, int], list[RunResult]]:
    """Runs grouped by (dataset, candidate count): the units a table or plot compares."""
    out: dict[tuple[str, int], list[RunResult]] = {}
    for run in runs:
        out.setdefault((run.dataset, run.candidates), []).append(run)
    return out


def write_run(result: RunResult, out: Path) -> tuple[Path, Path]:
    """Write ``<run>.json`` and ``<run>.md`` atomically into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{result.run}.json"
    md_path = out / f"{result.run}.md"
    atomic_write(json_path, result.model_dump_json(indent=1))
    atomic_write(md_path, markdown_table([result]) + "\n")
    return json_path, md_path
