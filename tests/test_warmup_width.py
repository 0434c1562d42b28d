"""The evaluation warm-up: one propagation at a time offline, the endpoint's concurrency with a
model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from evaluation import warmup
from evaluation.runner import run_eval
from schemas.context import MemRecContext
from tests.support.fixtures import TINY_MOVIES, copy_store
from tests.support.openai_server import OpenAITestServer

pytestmark = pytest.mark.integration
LATENCY_S = 0.4


def test_width_is_one_offline_and_the_model_concurrency_otherwise(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    assert warmup.warm_up_width(MemRecContext(dataset="d", roles="offline")) == 1
    assert warmup.warm_up_width(MemRecContext(dataset="d", roles="standard")) > 1
    ctx = MemRecContext(dataset="d", roles="standard", model_concurrency=3)
    assert warmup.warm_up_width(ctx) == 3


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_a_model_backed_warm_up_keeps_its_calls_in_flight(
    concurrency: int, tmp_path: Path, monkeypatch
) -> None:
    arrivals: list[float] = []

    def note(request):
        if request.task == "propagate":
            arrivals.append(time.monotonic())

    home = copy_store(tmp_path / "home", TINY_MOVIES)
    with OpenAITestServer(handler=note, latency_s=LATENCY_S) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        monkeypatch.setenv("MEMREC_MODEL_CONCURRENCY", str(concurrency))
        warmup.clear_warm_cache()
        result = await run_eval(
            TINY_MOVIES, "memrec", roles="standard", users=8, out_dir=tmp_path / "runs",
            home=home, progress=False,
        )  # fmt: skip
    warmup.clear_warm_cache()
    assert result.warmup is not None and result.warmup.events == 8 == len(arrivals)
    assert result.failures == 0 and result.warmup.usage.fallbacks == 0
    # one at a time: each call starts after the previous answered (LATENCY_S later); with 4 in
    # flight, four start before the first answer
    overlapping = sum(t - arrivals[0] < LATENCY_S * 0.75 for t in arrivals)
    assert overlapping == (1 if concurrency == 1 else 4)
