"""What every benchmark shares: options, the result schema, percentiles, JSON and table output."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from bench.paths import DEFAULT_HOME, DEFAULT_OUT, REPO, default_data_dir

__all__ = ["DEFAULT_HOME", "DEFAULT_OUT", "REPO", "default_data_dir"]

log = logging.getLogger(__name__)


class BenchOptions(BaseModel):
    """How a benchmark runs (the same for the ``python -m bench`` and ``memrec bench`` entries)."""

    quick: bool = Field(False, description="small settings so the whole suite runs in minutes")
    smoke: bool = Field(False, description="tiny settings for the test suite (seconds)")
    out: Path = Field(DEFAULT_OUT, description="folder the JSON results are written to")
    home: Path = Field(DEFAULT_HOME, description="MemRec home holding the benchmark's indexes")
    data_dir: Path = Field(default_factory=default_data_dir, description="benchmark data")
    datasets: list[str] | None = Field(None, description="override the benchmark's datasets")

    def size(self, full: int, quick: int, smoke: int) -> int:
        """Pick a setting by mode."""
        return smoke if self.smoke else quick if self.quick else full


class Target(BaseModel):
    """One target of the issue, with the measured value and whether it is met."""

    name: str = Field(description="what is measured")
    limit: str = Field(description="the target, e.g. '<= 5 ms'")
    value: float | None = Field(description="the measured value (None: not measured)")
    met: bool | None = Field(description="None when it was not measured")


class BenchResult(BaseModel):
    """What a benchmark writes: method, configuration, table rows, targets and notes."""

    bench: str
    mode: str = Field(description="full, quick or smoke")
    started_at: float
    seconds: float = 0.0
    machine: dict[str, Any] = Field(default_factory=dict)
    method: str = Field(description="how the figures were measured")
    config: dict[str, Any] = Field(default_factory=dict)
    rows: list[dict[str, Any]] = Field(default_factory=list, description="one per table row")
    targets: list[Target] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def new_result(bench: str, opts: BenchOptions, method: str, **config: Any) -> BenchResult:
    """An empty result stamped with the mode, the machine and the same-run reference workload."""
    from bench.timing import reference_ms  # heavy imports: only when a benchmark runs

    return BenchResult(
        bench=bench,
        mode="smoke" if opts.smoke else "quick" if opts.quick else "full",
        started_at=time.time(),
        machine={
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "reference_ms_at_start": reference_ms(),
        },
        method=method,
        config=config,
    )


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation), rounded to 3 decimals; NaN-free input only."""
    if not len(values):
        return float("nan")
    return round(float(np.percentile(np.asarray(values, dtype=float), q)), 3)


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of a sample."""
    return {
        "p50": pct(values, 50),
        "p99": pct(values, 99),
        "mean": round(float(np.mean(values)), 3) if len(values) else float("nan"),
        "max": round(float(np.max(values)), 3) if len(values) else float("nan"),
        "n": len(values),
    }


def target(name: str, limit: str, value: float | None, ok: bool | None) -> Target:
    """A target row (``ok`` None when the value could not be measured)."""
    return Target(name=name, limit=limit, value=None if value is None else round(value, 3), met=ok)


def finish(result: BenchResult, opts: BenchOptions, console: Console | None = None) -> Path:
    """Stamp the duration, write ``<out>/<bench>.json`` and print the table; returns the path."""
    result.seconds = round(time.time() - result.started_at, 2)
    result.machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    from bench.timing import reference_ms

    result.machine["reference_ms_at_end"] = reference_ms()
    opts.out.mkdir(parents=True, exist_ok=True)
    path = opts.out / f"{result.bench}.json"
    path.write_text(json.dumps(result.model_dump(mode="json"), indent=2, allow_nan=True))
    print_result(result, console or Console(width=None if sys.stdout.isatty() else 160))
    return path


def print_result(result: BenchResult, console: Console) -> None:
    """A rich table of the rows, then the targets and notes."""
    if result.rows:
        columns = list(dict.fromkeys(k for row in result.rows for k in row))
        table = Table(title=f"bench {result.bench} ({result.mode}, {result.seconds:.1f} s)")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in result.rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        console.print(table)
    if result.targets:
        table = Table(title=f"targets: {result.bench}")
        for column in ("target", "limit", "value", "met"):
            table.add_column(column)
        for t in result.targets:
            met = "n/a" if t.met is None else ("yes" if t.met else "NO")
            table.add_row(t.name, t.limit, _cell(t.value), met)
        console.print(table)
    for note in result.notes:
        console.print(f"[dim]note:[/dim] {note}")
    ref = [result.machine.get(f"reference_ms_at_{w}") for w in ("start", "end")]
    load = [result.machine.get(f"load_average_at_{w}") for w in ("start", "end")]
    console.print(f"[dim]reference workload (CPU ms, start / end):[/dim] {ref}; load: {load}")


def reference(result: BenchResult) -> float:
    """The same-run reference workload's CPU ms (mean of the start and end measurements)."""
    ref = [result.machine.get(f"reference_ms_at_{w}") for w in ("start", "end")]
    values = [float(v) for v in ref if v]
    if not values:
        from bench.timing import reference_ms

        values = [reference_ms()]
    return round(sum(values) / len(values), 2)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
