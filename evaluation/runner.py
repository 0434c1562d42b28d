"""The benchmark runner: one method on one dataset under the protocol, resumable, one JSON per run.

Agentic methods warm up a clone of the indexed workspace (``evaluation/warmup.py``), then every
user's test candidates are ranked through the recommend graph (``evaluation/ranking.py``);
classical baselines are tuned on validation and scored on the same users
(``evaluation/classical.py``). Results and partials: ``evaluation/results.py``; the Markdown table
and plots: ``evaluation/report.py``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from dataio.candidates import (
    CandidateFile,
    ensure_candidates,
    ensure_user_sample,
    read_candidates,
)
from dataio.dataset import Dataset
from dataio.paths import resolve_home, safe_name
from dataio.paths import store_dir as default_store_dir
from dataio.split import Split
from evaluation.classical import run_classical
from evaluation.leakage import check_no_leak
from evaluation.methods import STRONG_BASELINES, MethodSpec, get_method, method_context
from evaluation.metrics import summarize
from evaluation.ranking import rank_users
from evaluation.results import (
    ERRORS_KEPT,
    EvalError,
    RunResult,
    UserResult,
    WarmupStats,
    check_results_folder,
    load_partial,
    node_stats,
    partial_header,
    partial_path,
)
from evaluation.strong import run_strong
from evaluation.tables import write_run
from evaluation.warmup import warmed_workspace
from memory_store.catalog import load_catalog
from memory_store.ranker_index import RankerConfig
from memory_store.workspace import INDEX_MARKER
from roles.factory import role_specs
from roles.models import get_preset
from schemas.context import MemRecContext
from services.index import build_index

logger = logging.getLogger(__name__)

CANDIDATE_COUNTS = (10, 20)
DEFAULT_LLM_USERS = 1000
SEED = 0
TIE_RULE = "descending score; ties by a seeded hash of (seed 0, user code, item code)"


async def run_eval(
    dataset: str,
    method: str,
    *,
    roles: str = "offline",
    users: int | None = None,
    candidates: int = 10,
    concurrency: int = 8,
    out_dir: str | Path = "results",
    k: int | None = None,
    home: str | Path | None = None,
    data_dir: str | Path | None = None,
    candidates_file: str | Path | None = None,
    progress: bool = True,
) -> RunResult:
    """Evaluate ``method`` on ``dataset``; writes ``<out>/<run>.json`` and ``<out>/<run>.md``."""
    start = time.perf_counter()
    spec = get_method(method)
    _check_args(candidates, concurrency, users, k)
    out = Path(out_dir)
    check_results_folder(out)
    store = ensure_index(dataset, home, data_dir)
    ds, split = load_catalog(store)
    test_cands = _test_candidates(store, ds, split, candidates, candidates_file)
    ctx = _context(spec, dataset, roles, k) if spec.agentic else None
    evaluated = _evaluated_users(store, ds, split, users, ctx, test_cands)
    run = _run_name(ds.name, spec, ctx, candidates, users, len(evaluated), k)
    if ctx is not None:
        results, warmup = await _run_agentic(
            ctx, ds, split, store, home, evaluated, test_cands, out, run, concurrency, progress
        )
        config = _ctx_config(ctx, home, store)
    else:
        valid_cands = ensure_candidates(store, ds, split, "valid", candidates, SEED)
        results, config = _run_baseline(spec.name, ds, split, valid_cands, test_cands, evaluated)
        warmup = None
    k_set = k if spec.agentic else None
    result = _assemble(spec, ds, split, ctx, candidates, config, evaluated, results, run, k_set)
    result.warmup = warmup
    result.wall_s = round(time.perf_counter() - start, 3)
    write_run(result, out)
    partial_path(out, run).unlink(missing_ok=True)
    return result


def _check_args(candidates: int, concurrency: int, users: int | None, k: int | None) -> None:
    if candidates not in CANDIDATE_COUNTS:
        raise EvalError(f"candidates must be one of {CANDIDATE_COUNTS}, not {candidates}")
    if concurrency < 1:
        raise EvalError(f"concurrency must be a positive number of requests, not {concurrency}")
    if users is not None and users < 1:
        raise EvalError(f"users must be a positive number of users, not {users}")
    if k is not None and k < 1:
        raise EvalError(f"k must be a positive number of neighbours, not {k}")


def ensure_index(dataset: str, home: str | Path | None, data_dir: str | Path | None) -> Path:
    """The dataset's store folder, indexing it first when there is no index yet.

    Concurrent evaluations on a fresh home (``--jobs 2``) index once: an exclusive file lock
    makes the second process wait for the first build, then reuse it.
    """
    store = default_store_dir(dataset, home)
    if (store / INDEX_MARKER).exists():
        return store
    store.parent.mkdir(parents=True, exist_ok=True)
    with (store.parent / f".{store.name}.index.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (store / INDEX_MARKER).exists():
            logger.info("%s is not indexed under %s: indexing it now", dataset, store)
            build_index(dataset, data_dir=data_dir, home=home)
    return store


def _test_candidates(
    store: Path, ds: Dataset, split: Split, n: int, path: str | Path | None
) -> CandidateFile:
    if path is None:
        return ensure_candidates(store, ds, split, "test", n, SEED)
    cands = read_candidates(Path(path), ds)
    if cands.which != "test" or cands.n != n:
        raise EvalError(
            f"{path} holds {cands.which} candidates with n={cands.n}; the run needs test "
            f"candidates with n={n}"
        )
    return cands


def _context(spec: MethodSpec, dataset: str, roles: str, k: int | None) -> MemRecContext:
    get_preset(roles)  # fails early, naming the accepted presets
    base = MemRecContext(dataset=dataset, roles=roles, chroma_url=None, home=None)
    ctx = method_context(spec, base)
    return dataclasses.replace(ctx, k=k) if k is not None else ctx


def _offline(ctx: MemRecContext | None) -> bool:
    if ctx is None:
        return True
    return role_specs(ctx) == ("offline", "offline")


def _evaluated_users(
    store: Path,
    ds: Dataset,
    split: Split,
    users: int | None,
    ctx: MemRecContext | None,
    cands: CandidateFile,
) -> list[int]:
    """All test users (offline), else a seeded sample saved in the store folder."""
    if users is None and _offline(ctx):
        chosen = sorted(split.test["user"].tolist())
    else:
        chosen = ensure_user_sample(store, ds, split, users or DEFAULT_LLM_USERS, SEED)
    missing = [u for u in chosen if u not in cands.users]
    if missing:
        raise EvalError(
            f"the candidate file has no list for {len(missing)} evaluated users "
            f"(e.g. {ds.user_ids[missing[0]]!r}); it was written for another split"
        )
    return chosen


def _run_name(
    dataset: str,
    spec: MethodSpec,
    ctx: MemRecContext | None,
    candidates: int,
    users: int | None,
    n: int,
    k: int | None,
) -> str:
    parts = [safe_name(dataset), spec.name]
    if ctx is not None:
        parts.append(safe_name(ctx.roles))
        if k is not None:
            parts.append(f"k{k}")
    parts.append(f"c{candidates}")
    if users is not None:
        parts.append(f"u{n}")
    return "-".join(parts)


def _finite(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters for JSON: an infinite value (no recency weighting) written as "inf"."""
    return {
        k: "inf" if isinstance(v, float) and not math.isfinite(v) else v for k, v in params.items()
    }


def _ctx_config(ctx: MemRecContext, home: str | Path | None, store: Path) -> dict[str, Any]:
    config = dataclasses.asdict(ctx)
    config["home"] = str(resolve_home(home))
    config["ties"] = TIE_RULE
    ranker = RankerConfig.load(store)  # the offline ranker as tuned on validation at index time
    config["offline_ranker"] = {
        "tuned": ranker.tuned,
        "params": _finite(ranker.params.model_dump()),
        "weights": ranker.weights,
        "valid_h1": ranker.report.get("valid_h1"),
        "group_lift_cv_h1": ranker.report.get("group_lift_cv_h1"),
    }
    return config


def _run_baseline(
    name: str,
    ds: Dataset,
    split: Split,
    valid_cands: CandidateFile,
    test_cands: CandidateFile,
    users: list[int],
) -> tuple[dict[int, UserResult], dict[str, Any]]:
    extra: dict[str, Any] = {}
    if name in STRONG_BASELINES:
        run, extra = run_strong(name, ds, split, valid_cands, test_cands, users)
    else:
        run = run_classical(name, ds, split, valid_cands, test_cands, users, SEED)
    results = {u: UserResult(user_id=ds.user_ids[u], rank=r) for u, r in run.ranks.items()}
    config = {
        "baseline": name,
        "params": _finite(run.params),
        "valid_h1": run.valid_h1,
        "valid_mrr": run.valid_mrr,
        "seed": SEED,
        "ties": TIE_RULE,
        **extra,
    }
    return results, config


async def _run_agentic(
    ctx: MemRecContext,
    ds: Dataset,
    split: Split,
    store: Path,
    home: str | Path | None,
    users: list[int],
    cands: CandidateFile,
    out: Path,
    run: str,
    concurrency: int,
    progress: bool,
) -> tuple[dict[int, UserResult], WarmupStats]:
    """Warm up a clone of the workspace (or reuse one), rank the users not yet done."""
    partial = partial_path(out, run)
    done = load_partial(partial, partial_header(run, ctx, cands, users), ds)
    ws, run_home, warmup = await warmed_workspace(ctx, ds, split, home, users, out / run / "home")
    ctx = dataclasses.replace(ctx, home=run_home)
    check_no_leak(ws, split, users)
    todo = [u for u in users if u not in done]
    targets = dict(zip(split.test["user"].tolist(), split.test["item"].tolist(), strict=True))
    fresh = await rank_users(ctx, ws, todo, cands, targets, partial, concurrency, progress)
    return {**done, **fresh}, warmup


def _assemble(
    spec: MethodSpec,
    ds: Dataset,
    split: Split,
    ctx: MemRecContext | None,
    candidates: int,
    config: dict[str, Any],
    users: list[int],
    results: dict[int, UserResult],
    run: str,
    k_override: int | None,
) -> RunResult:
    ordered = [results[u] for u in users]
    ranks = [r.rank for r in ordered]
    degree = np.bincount(split.train["user"].to_numpy(), minlength=ds.n_users)
    nodes = node_stats(ordered) if spec.agentic else {}
    total_tokens = sum(s.tokens_in + s.tokens_out for n, s in nodes.items() if n != "request")
    return RunResult(
        run=run,
        method=spec.name,
        family=spec.family,
        dataset=ds.name,
        roles=ctx.roles if ctx else None,
        candidates=candidates,
        k=ctx.k if ctx else None,
        k_override=k_override,
        config=config,
        n_users=len(users),
        metrics=summarize(ranks, seed=SEED),
        nodes=nodes,
        tokens_per_request=round(total_tokens, 2),
        latency_ms_p50=nodes["request"].latency_ms_p50 if "request" in nodes else 0.0,
        repairs=sum(u.repairs for r in ordered for u in r.usage.values()),
        fallbacks=sum(u.fallbacks for r in ordered for u in r.usage.values()),
        failures=sum(r.failed for r in ordered),
        errors=[f"{r.user_id}: {r.error}" for r in ordered if r.failed][:ERRORS_KEPT],
        wall_s=0.0,
        users=[r.user_id for r in ordered],
        ranks=ranks,
        train_degree=[int(degree[u]) for u in users],
    )
