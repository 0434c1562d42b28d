"""The real-model lane's steps: direct probes of the endpoint, then ``memrec`` as a user runs it.

Each step takes a :class:`StepContext` (the endpoint behind the recording proxy, the lane's MemRec
store) and returns a :class:`StepOutcome`; ``bench/realmodel.py`` adds the proxy's call records
and builds the row. Add a step by writing a function and naming it in :data:`STEPS`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from bench._realmodel_runtime import LaneConfig, Ran, run_bounded

USER = "1"  # the README's example user
FEEDBACK_ITEM = "50"
CHAT_MESSAGE = "something light and funny for tonight"


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
from graph.recommend import graph
from schemas.context import MemRecContext
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
