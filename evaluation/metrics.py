"""Ranking metrics with bootstrap intervals and paired significance tests (BENCHMARK.md).

Everything here is a pure function over per-user target ranks (1-based, 0 = miss), so every method,
offline or LLM-backed, is scored by the same code. A failed ranking is a rank of 0, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

METRICS: tuple[str, ...] = ("H@1", "H@3", "H@5", "N@3", "N@5", "MRR")

# Upper bound on the number of elements of one resampling index matrix (bounds memory).
_CHUNK_ELEMENTS = 2_000_000


class MetricSummary(BaseModel):
    """A metric averaged over users, with its percentile bootstrap interval."""

    model_config = ConfigDict(frozen=True)

    mean: float
    lo: float
    hi: float


class PairedResult(BaseModel):
    """Difference of two methods on the same users (a - b), with CI and permutation p-value."""

    model_config = ConfigDict(frozen=True)

    mean_diff: float
    lo: float
    hi: float
    p_value: float


def target_rank(ranked: Sequence[int | str] | None, target: int | str) -> int:
    """Return the 1-based rank of ``target`` in ``ranked``; 0 when absent or ``ranked`` is None.

    Ids are compared by their string form, so ``5`` and ``"5"`` match (codes vs original ids).
    """
    if ranked is None:
        return 0
    wanted = str(target)
    for position, item in enumerate(ranked, start=1):
        if str(item) == wanted:
            return position
    return 0


def _as_ranks(ranks: np.ndarray | Sequence[int]) -> np.ndarray:
    """Validate ranks as a 1-D array of non-negative integers."""
    arr = np.asarray(ranks)
    if arr.ndim != 1:
        raise ValueError(f"ranks must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.mod(arr, 1) == 0):
            raise ValueError("ranks must be integers (1-based rank, 0 = miss)")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise ValueError("ranks must be >= 0 (1-based rank, 0 = miss)")
    return arr


def user_metrics(ranks: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
    """Per-user value of every metric in METRICS for 1-based target ranks (0 = miss)."""
    r = _as_ranks(ranks)
    hit = r >= 1
    safe = np.where(hit, r, 1).astype(np.float64)
    gain = np.where(hit, 1.0 / np.log2(safe + 1.0), 0.0)
    out: dict[str, np.ndarray] = {}
    for k in (1, 3, 5):
        out[f"H@{k}"] = (hit & (r <= k)).astype(np.float64)
    for k in (3, 5):
        out[f"N@{k}"] = np.where(hit & (r <= k), gain, 0.0)
    out["MRR"] = np.where(hit, 1.0 / safe, 0.0)
    return {name: out[name] for name in METRICS}


def _as_values(values: np.ndarray | Sequence[float], what: str) -> np.ndarray:
    """Validate a non-empty 1-D float array."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {arr.shape}")
    return arr


def _chunks(total: int, n: int) -> list[int]:
    """Split ``total`` resamples into chunk sizes whose index matrices stay under the bound."""
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    return [min(step, total - start) for start in range(0, total, step)]


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples with replacement of ``values``."""
    n = values.size
    means = [values[rng.integers(0, n, size=(size, n))].mean(axis=1) for size in _chunks(n_boot, n)]
    return np.concatenate(means)


def _check_level(level: float, n: int, name: str) -> None:
    """Reject a confidence level outside (0, 1) or a non-positive resample count."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")


def bootstrap_ci(
    values: np.ndarray | Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> MetricSummary:
    """Mean of ``values`` with a percentile bootstrap interval at ``level``."""
    arr = _as_values(values, "values")
    _check_level(level, n_boot, "n_boot")
    means = _bootstrap_means(arr, n_boot, np.random.default_rng(seed))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    mean = float(arr.mean())
    # Clamp so floating-point noise never puts the point estimate outside its own interval.
    return MetricSummary(mean=mean, lo=min(float(lo), mean), hi=max(float(hi), mean))


def summarize(
    ranks: np.ndarray | Sequence[int], n_boot: int = 1000, seed: int = 0
) -> dict[str, MetricSummary]:
    """Every metric in METRICS averaged over users, each with its 95% bootstrap interval."""
    per_user = user_metrics(ranks)
    return {name: bootstrap_ci(v, n_boot=n_boot, seed=seed) for name, v in per_user.items()}


def _sign_flip_p(diff: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided sign-flip permutation p-value of mean(diff) = 0 (with the +1 correction)."""
    n = diff.size
    observed = abs(diff.mean())
    tol = 1e-12 * max(1.0, float(np.abs(diff).max()))
    extreme = 0
    for size in _chunks(n_perm, n):
        signs = rng.integers(0, 2, size=(size, n), dtype=np.int8) * 2 - 1
        stats = np.abs((signs * diff).mean(axis=1))
        extreme += int(np.count_nonzero(stats >= observed - tol))
    return (extreme + 1) / (n_perm + 1)


def paired_test(
    a: np.ndarray | Sequence[float],
    b: np.ndarray | Sequence[float],
    n_perm: int = 10000,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> PairedResult:
    """Compare two methods on the same users: bootstrap CI of mean(a - b) and sign-flip p-value."""
    a_arr = _as_values(a, "a")
    b_arr = _as_values(b, "b")
    if a_arr.size != b_arr.size:
        raise ValueError(
            f"paired_test needs per-user values of the same users: got {a_arr.size} and "
            f"{b_arr.size} values"
        )
    _check_level(level, n_perm, "n_perm")
    _check_level(level, n_boot, "n_boot")
    diff = a_arr - b_arr
    rng = np.random.default_rng(seed)
    summary = bootstrap_ci(diff, n_boot=n_boot, seed=seed, level=level)
    p_value = _sign_flip_p(diff, n_perm, rng)
    return PairedResult(mean_diff=summary.mean, lo=summary.lo, hi=summary.hi, p_value=p_value)
