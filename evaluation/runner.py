"""The benchmark runner: one method on one dataset under the protocol, resumable, one JSON per run.

Agentic methods run in a clone of the indexed workspace (the served store is never touched): the
evaluated users' validation interactions are recorded and propagated (the warm-up), then every
user's test candidates are ranked through the recommend graph with bounded concurrency. Test-time
memory writes are off, so ranking only reads and the order of users does not matter. The test
target never enters the event log, the graph or a memory before ranking (checked before ranking).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from evaluation.methods import MethodSpec, get_method, method_context
from evaluation.metrics import MetricSummary, summarize, target_rank
from evaluation.protocol import (
    CandidateFile,
    Split,
    ensure_candidates,
    ensure_user_sample,
    read_candidates,
)
from graph.context import MemRecContext
from memory_store.datasets import Dataset
from memory_store.paths import resolve_home, safe_name
from memory_store.paths import store_dir as default_store_dir
from memory_store.workspace import INDEX_MARKER, Workspace, load_catalog
from nodes.record import record_interaction
from nodes.roles import CallUsage

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CANDIDATE_COUNTS = (10, 20)
DEFAULT_LLM_USERS = 1000
SEED = 0
ERRORS_KEPT = 20


class EvalError(ValueError):
    """A run cannot start or continue; the message says what was wrong and what is accepted."""


class LeakageError(RuntimeError):
    """A test target reached the run's state before ranking: the run is invalid."""


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


# ---------------------------------------------------------------------------- entry point


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
    store = _ensure_index(dataset, home, data_dir)
    ds, split = load_catalog(store)
    test_cands = _test_candidates(store, ds, split, candidates, candidates_file)
    ctx = _context(spec, dataset, roles, k) if spec.agentic else None
    evaluated = _evaluated_users(store, ds, split, users, ctx, test_cands)
    run = _run_name(ds.name, spec, ctx, candidates, users, len(evaluated), k)
    if ctx is not None:
        results, warmup = await _run_agentic(
            ctx, ds, split, store, home, evaluated, test_cands, out, run, concurrency, progress
        )
        config = _ctx_config(ctx, home)
    else:
        valid_cands = ensure_candidates(store, ds, split, "valid", candidates, SEED)
        results, config = _run_baseline(spec.name, ds, split, valid_cands, test_cands, evaluated)
        warmup = None
    k_set = k if spec.agentic else None
    result = _assemble(spec, ds, split, ctx, candidates, config, evaluated, results, run, k_set)
    result.warmup = warmup
    result.wall_s = round(time.perf_counter() - start, 3)
    write_run(result, out)
    _partial_path(out, run).unlink(missing_ok=True)
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


def _ensure_index(dataset: str, home: str | Path | None, data_dir: str | Path | None) -> Path:
    """The dataset's store folder, indexing it first when there is no index yet."""
    store = default_store_dir(dataset, home)
    if not (store / INDEX_MARKER).exists():
        from memory_store.index import build_index

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
    from nodes.models import get_preset

    get_preset(roles)  # fails early, naming the accepted presets
    base = MemRecContext(dataset=dataset, roles=roles, chroma_url=None, home=None)
    ctx = method_context(spec, base)
    return dataclasses.replace(ctx, k=k) if k is not None else ctx


def _offline(ctx: MemRecContext | None) -> bool:
    if ctx is None:
        return True
    from nodes.role_factory import role_specs

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


def _ctx_config(ctx: MemRecContext, home: str | Path | None) -> dict[str, Any]:
    config = dataclasses.asdict(ctx)
    config["home"] = str(resolve_home(home))
    return config


# ---------------------------------------------------------------------------- classical


def _run_baseline(
    name: str,
    ds: Dataset,
    split: Split,
    valid_cands: CandidateFile,
    test_cands: CandidateFile,
    users: list[int],
) -> tuple[dict[int, UserResult], dict[str, Any]]:
    from evaluation.classical import run_classical

    run = run_classical(name, ds, split, valid_cands, test_cands, users, SEED)
    results = {u: UserResult(user_id=ds.user_ids[u], rank=r) for u, r in run.ranks.items()}
    config = {
        "baseline": name,
        "params": run.params,
        "valid_h1": run.valid_h1,
        "valid_mrr": run.valid_mrr,
        "seed": SEED,
    }
    return results, config


# ------------------------------------------------------------------------------- agentic


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
    partial = _partial_path(out, run)
    done = load_partial(partial, _partial_header(run, ctx, cands, users), ds)
    ws, key, warmup = await _warmed_workspace(ctx, ds, split, home, users, out / run / "ws")
    ctx = dataclasses.replace(ctx, home=key)
    check_no_leak(ws, split, users)
    todo = [u for u in users if u not in done]
    targets = dict(zip(split.test["user"].tolist(), split.test["item"].tolist(), strict=True))
    fresh = await rank_users(ctx, ws, todo, cands, targets, partial, concurrency, progress)
    return {**done, **fresh}, warmup


# Context fields that only change how the recommend graph READS (which memories, whether
# neighbours are used): propagation ignores them, so runs differing only in these share one
# warm-up (tests/test_runner.py pins that the warmed states are identical).
# Context fields that only change how a request is read and ranked, never the warm-up writes.
READ_ONLY_FIELDS = frozenset(
    {
        "memory",
        "collab_read",
        "home",
        "k",
        "curation",
        "tau",
        "n_facets",
        "llmrec",
        "min_users",
        "min_items",
    }
)
_WARMED: dict[str, tuple[Workspace, str, WarmupStats]] = {}


def clear_warm_cache() -> None:
    """Forget warmed workspaces (the next run warms up from scratch)."""
    for ws, _, _ in _WARMED.values():
        ws.events.close()
    _WARMED.clear()


def _warm_key(ctx: MemRecContext, ds: Dataset, home: str | Path | None, users: list[int]) -> str:
    fields = {k: v for k, v in dataclasses.asdict(ctx).items() if k not in READ_ONLY_FIELDS}
    payload = [ds.name, str(resolve_home(home)), fields, users]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


async def _warmed_workspace(
    ctx: MemRecContext,
    ds: Dataset,
    split: Split,
    home: str | Path | None,
    users: list[int],
    directory: Path,
) -> tuple[Workspace, str, WarmupStats]:
    """A clone of the served workspace after the warm-up, shared by runs with the same key.

    Ranking never writes (test-time writes are off), so a warmed clone serves several runs.
    """
    from memory_store.workspace import get_workspace, register_workspace

    warm_key = _warm_key(ctx, ds, home, users)
    if warm_key in _WARMED:
        ws, key, stats = _WARMED[warm_key]
        return ws, key, stats.model_copy(update={"reused": True})
    served = get_workspace(ds.name, home=home)
    if served.events.interactions():
        logger.warning("the served store has live interactions; the clone starts from the index")
    ws = served.clone(directory)
    key = f"eval:{warm_key[:16]}:{uuid.uuid4().hex}"
    register_workspace(ws, ds.name, key)
    stats = await warm_up(ws, dataclasses.replace(ctx, home=key), split, users)
    _WARMED[warm_key] = (ws, key, stats)
    return ws, key, stats


async def warm_up(ws: Workspace, ctx: MemRecContext, split: Split, users: list[int]) -> WarmupStats:
    """Record and propagate every evaluated user's validation interaction, in time order.

    Deterministic (fixed order, one event at a time), so a resumed run rebuilds the same state.
    Without collaborative write nothing is recorded at all.
    """
    start = time.perf_counter()
    usage = CallUsage.model_validate({})
    if not ctx.collab_write:
        return WarmupStats(events=0, seconds=0.0, usage=usage)
    from nodes.propagation import propagate_event

    rows = split.valid[split.valid["user"].isin(set(users))].sort_values(
        ["ts", "user"], kind="stable"
    )
    ids = ws.dataset
    for user, item, ts in zip(rows["user"], rows["item"], rows["ts"], strict=True):
        event = record_interaction(
            ws, ids.user_ids[user], ids.item_ids[item], "positive", float(ts)
        )
        report = await propagate_event(ws, ctx, event)
        usage = usage.merged(report.usage)
    seconds = round(time.perf_counter() - start, 3)
    logger.info("warm-up: %d validation interactions in %.1f s", len(rows), seconds)
    return WarmupStats(events=len(rows), seconds=seconds, usage=usage)


def check_no_leak(ws: Workspace, split: Split, users: list[int]) -> None:
    """Raise LeakageError if an evaluated user's test interaction is in the event log."""
    wanted = set(users)
    valid = dict(zip(split.valid["user"].tolist(), split.valid["item"].tolist(), strict=True))
    ids = ws.dataset
    test_pairs = {
        (ids.user_ids[u], ids.item_ids[i])
        for u, i in zip(split.test["user"].tolist(), split.test["item"].tolist(), strict=True)
        if u in wanted and valid.get(u) != i  # a repeated item is legitimately in the warm-up
    }
    leaked = [e for e in ws.events.interactions() if (e.user_id, e.item_id) in test_pairs]
    if leaked:
        raise LeakageError(
            f"{len(leaked)} test interactions are in the run's event log before ranking "
            f"(e.g. user {leaked[0].user_id!r}, item {leaked[0].item_id!r})"
        )


def _recommend_graph() -> Any:
    """The compiled recommend graph (a seam: tests substitute a failing one)."""
    from graph.recommend import graph

    return graph


async def rank_one(
    ctx: MemRecContext, ws: Workspace, user: int, cands: list[int], target: int
) -> UserResult:
    """Rank one user's test candidates; any failure or non-permutation is a recorded miss."""
    ids = ws.dataset
    user_id = ids.user_ids[user]
    cand_ids = [ids.item_ids[i] for i in cands]
    start = time.perf_counter()
    try:
        out = await _recommend_graph().ainvoke(
            {"user_id": user_id, "candidates": cand_ids, "request": None}, context=ctx
        )
        ranked = [_item_id(r) for r in out.get("ranking") or []]
        usage = {n: CallUsage.model_validate(u) for n, u in (out.get("usage") or {}).items()}
    # Any failure of any node must become a counted miss, never a dropped user or a dead run;
    # it is logged and kept in the result.
    except Exception as exc:
        logger.warning("user %s failed: %s: %s", user_id, type(exc).__name__, exc)
        return _failed(user_id, f"{type(exc).__name__}: {exc}", start)
    if sorted(ranked) != sorted(cand_ids):
        return _failed(user_id, f"not a permutation of the candidates: {ranked[:12]}", start)
    return UserResult(
        user_id=user_id,
        rank=target_rank(ranked, ids.item_ids[target]),
        latency_ms=(time.perf_counter() - start) * 1000.0,
        usage=usage,
    )


def _item_id(ranked: Any) -> str:
    return str(ranked["item_id"] if isinstance(ranked, dict) else ranked.item_id)


def _failed(user_id: str, error: str, start: float) -> UserResult:
    latency = (time.perf_counter() - start) * 1000.0
    return UserResult(user_id=user_id, rank=0, failed=True, error=error, latency_ms=latency)


async def rank_users(
    ctx: MemRecContext,
    ws: Workspace,
    users: list[int],
    cands: CandidateFile,
    targets: dict[int, int],
    partial: Path,
    concurrency: int,
    progress: bool,
) -> dict[int, UserResult]:
    """Rank ``users``, at most ``concurrency`` requests in flight; append each to ``partial``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    gate = asyncio.Semaphore(concurrency)
    results: dict[int, UserResult] = {}
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar, partial.open("a") as sink:
        task = bar.add_task(f"ranking {ctx.dataset}", total=len(users))

        async def one(user: int) -> None:
            async with gate:
                result = await rank_one(ctx, ws, user, cands.users[user], targets[user])
            results[user] = result
            sink.write(result.model_dump_json() + "\n")
            sink.flush()
            bar.advance(task)

        tasks = [asyncio.create_task(one(u)) for u in users]
        try:
            await asyncio.gather(*tasks)
        finally:  # a crash stops the run: nothing more is ranked or appended
            for pending in tasks:
                pending.cancel()
    return results


# ------------------------------------------------------------------------------ partials


def _partial_path(out: Path, run: str) -> Path:
    return out / f"{run}.partial.jsonl"


def _partial_header(
    run: str, ctx: MemRecContext, cands: CandidateFile, users: list[int]
) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------- results


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


def write_run(result: RunResult, out: Path) -> tuple[Path, Path]:
    """Write ``<run>.json`` and ``<run>.md`` atomically into ``out``."""
    from evaluation.report import markdown_table

    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{result.run}.json"
    md_path = out / f"{result.run}.md"
    _atomic_write(json_path, result.model_dump_json(indent=1))
    _atomic_write(md_path, markdown_table([result]) + "\n")
    return json_path, md_path


def _atomic_write(path: Path, text: str) -> None:
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
