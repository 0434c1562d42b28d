"""What a benchmark run produces and how it is stored: the run JSON, per-user partials, node costs.

A run is one JSON file (``RunResult``) written atomically; while it runs, each ranked user is
appended to ``<run>.partial.jsonl`` so a crashed run resumes where it stopped (``load_partial``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from dataio.candidates import CandidateFile
from dataio.dataset import Dataset
from evaluation.metrics import MetricSummary
from schemas.context import MemRecContext
from schemas.records import CallUsage

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ERRORS_KEPT = 20


class EvalError(ValueError):
    """A run cannot start or continue; the message says what was wrong and what is accepted."""


class NodeStats(BaseModel):
    """Cost of one graph node (or of the whole ``request``) over the ranked users."""

    requests: int = Field(description="users whose request ran this node")
    calls: int = Field(description="model calls in total")
    tokens_in: float = Field(description="mean prompt tokens per request")
    tokens_out: float = Field(description="mean completion tokens per request")
    latency_ms_mean: float
    latency_ms_p50: float
    latency_ms_p99: float
    repairs: int
    fallbacks: int
    retries: int


class WarmupStats(BaseModel):
    """What the warm-up did: validation interactions recorded and propagated."""

    events: int = Field(description="validation interactions recorded")
    seconds: float
    usage: CallUsage = Field(description="propagation cost summed over the events")
    reused: bool = Field(default=False, description="state shared from an earlier run's warm-up")


class UserResult(BaseModel):
    """One evaluated user's outcome, as appended to the partial file."""

    user_id: str
    rank: int = Field(description="1-based rank of the test target, 0 = miss or failure")
    failed: bool = False
    error: str | None = None
    latency_ms: float = 0.0
    usage: dict[str, CallUsage] = Field(default_factory=dict)


class RunResult(BaseModel):
    """One run: configuration, metrics with intervals, costs and per-user ranks."""

    format_version: int = FORMAT_VERSION
    run: str = Field(description="run name: file stem of the JSON and Markdown outputs")
    method: str
    family: str = Field(description="agentic or classical")
    dataset: str
    roles: str | None = Field(description="role preset (agentic methods only)")
    candidates: int
    k: int | None = Field(description="curated neighbours (agentic methods only)")
    k_override: int | None = Field(None, description="k set for this run (the k-sweep)")
    config: dict[str, Any] = Field(description="context fields, or the tuned parameters")
    n_users: int
    metrics: dict[str, MetricSummary]
    nodes: dict[str, NodeStats] = Field(default_factory=dict)
    tokens_per_request: float = 0.0
    latency_ms_p50: float = 0.0
    repairs: int = 0
    fallbacks: int = 0
    failures: int = 0
    errors: list[str] = Field(default_factory=list, description=f"first {ERRORS_KEPT} failures")
    wall_s: float
    warmup: WarmupStats | None = None
    users: list[str]
    ranks: list[int]
    train_degree: list[int]
    created_at: float = Field(default_factory=time.time)


def node_stats(results: list[UserResult]) -> dict[str, NodeStats]:
    """Per-node tokens and latency over the ranked users, plus the whole ``request``."""
    per_node: dict[str, list[CallUsage]] = {}
    for r in results:
        for node, usage in r.usage.items():
            per_node.setdefault(node, []).append(usage)
    stats = {node: _stats(usages) for node, usages in per_node.items()}
    if results:
        stats["request"] = _stats(
            [CallUsage.model_validate({"latency_ms": r.latency_ms}) for r in results]
        )
    return stats


def _stats(usages: list[CallUsage]) -> NodeStats:
    latency = np.asarray([u.latency_ms for u in usages], dtype=np.float64)
    return NodeStats(
        requests=len(usages),
        calls=sum(u.calls for u in usages),
        tokens_in=round(float(np.mean([u.tokens_in for u in usages])), 2),
        tokens_out=round(float(np.mean([u.tokens_out for u in usages])), 2),
        latency_ms_mean=round(float(latency.mean()), 3),
        latency_ms_p50=round(float(np.percentile(latency, 50)), 3),
        latency_ms_p99=round(float(np.percentile(latency, 99)), 3),
        repairs=sum(u.repairs for u in usages),
        fallbacks=sum(u.fallbacks for u in usages),
        retries=sum(u.retries for u in usages),
    )


def atomic_write(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def load_run(path: str | Path) -> RunResult:
    """Read a run JSON; EvalError naming the problem when it is not a run of this format."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalError(f"{path} is not a readable run JSON: {exc}") from exc
    _check_format(path, raw)
    try:
        return RunResult.model_validate(raw)
    except ValidationError as exc:
        raise EvalError(
            f"{path} is not a valid run JSON of format {FORMAT_VERSION}: {exc}"
        ) from exc


def _is_run(raw: Any) -> bool:
    return isinstance(raw, dict) and "format_version" in raw and "method" in raw


def _check_format(path: Path, raw: Any) -> None:
    if not _is_run(raw):
        raise EvalError(f"{path} is not a run JSON (no format_version and method)")
    if raw["format_version"] != FORMAT_VERSION:
        raise EvalError(
            f"{path} is a run of format_version {raw['format_version']!r}; this version reads "
            f"format {FORMAT_VERSION}. Re-run it, or write into a fresh --out folder"
        )


def run_files(folder: Path) -> list[Path]:
    """Run JSON files in ``folder`` (other JSON files are ignored)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if _is_run(raw):
            found.append(path)
    return found


def check_results_folder(folder: Path) -> None:
    """EvalError if ``folder`` holds runs of another format version (they would not compare)."""
    if not folder.exists():
        return
    for path in run_files(folder):
        _check_format(path, json.loads(path.read_text(encoding="utf-8")))


def partial_path(out: Path, run: str) -> Path:
    """Where a run appends its finished users while it runs."""
    return out / f"{run}.partial.jsonl"


def partial_header(
    run: str, ctx: MemRecContext, cands: CandidateFile, users: list[int]
) -> dict[str, Any]:
    """The first line of a partial file: a digest of everything the ranks depend on."""
    config = {k: v for k, v in dataclasses.asdict(ctx).items() if k != "home"}
    digest = hashlib.sha256(
        json.dumps([config, cands.fingerprint, cands.n, users], sort_keys=True).encode()
    ).hexdigest()[:16]
    return {"format_version": FORMAT_VERSION, "run": run, "config_digest": digest}


def load_partial(path: Path, header: dict[str, Any], ds: Dataset) -> dict[int, UserResult]:
    """Users finished by an earlier attempt of the same run; starts the file if there is none.

    A line cut by a crash is dropped (and the file rewritten without it); a file from another
    configuration or format version is an error rather than silently mixed in.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.stat().st_size == 0:
        path.write_text(json.dumps(header) + "\n")
        return {}
    lines = path.read_text().splitlines()
    found = _parse_header(path, lines[0])
    if found != header:
        raise EvalError(
            f"{path} belongs to another run (format {found.get('format_version')!r}, config "
            f"{found.get('config_digest')!r}; this run is format {FORMAT_VERSION}, config "
            f"{header['config_digest']!r}); delete it to start over or use another --out"
        )
    done: dict[int, UserResult] = {}
    kept = [lines[0]]
    for number, line in enumerate(lines[1:], start=2):
        try:
            result = UserResult.model_validate_json(line)
        except ValidationError:
            logger.warning("%s:%d: dropped an incomplete line (crash mid-write)", path, number)
            continue
        done[ds.user_index[result.user_id]] = result
        kept.append(line)
    path.write_text("\n".join(kept) + "\n")
    logger.info("resuming %s: %d users already ranked", path.name, len(done))
    return done


def _parse_header(path: Path, line: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path} has no readable header line; delete it to start over") from exc
    if not isinstance(header, dict):
        raise EvalError(f"{path} has no header object; delete it to start over")
    return header
