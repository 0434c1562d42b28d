"""An LLM-backed benchmark run end to end against an OpenAI-compatible endpoint on 127.0.0.1.

The `standard` preset (gpt-4o-mini for both roles) with the standard OpenAI environment variables
pointing at the test server: the real langchain-openai client, 32 requests in flight, and faults
in the middle of the run that the guards absorb and count.
"""

import threading
from pathlib import Path

import pytest

from evaluation import warmup
from evaluation.results import load_run
from evaluation.runner import run_eval
from services.index import build_index
from tests.support.fixtures import data_dir, needs_data
from tests.support.openai_server import OpenAITestServer, Reply

pytestmark = [pytest.mark.integration, needs_data]

USERS = 48
FAULTS = {30: Reply.error(500), 60: Reply(fault="invalid_json"), 90: Reply.error(429, "0")}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval-llm-home")
    build_index("ml-100k", data_dir=data_dir(), home=path)
    return path


async def test_llm_backed_run_with_concurrency_32_and_faults(home, tmp_path, monkeypatch) -> None:
    seen = 0
    lock = threading.Lock()

    def faults_mid_run(request):  # the 30th, 60th and 90th chat completions misbehave
        nonlocal seen
        with lock:
            seen += 1
            return FAULTS.get(seen)

    with OpenAITestServer(handler=faults_mid_run, latency_s=0.05) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_API_BASE", f"{server.url}/v1")
        warmup.clear_warm_cache()
        result = await run_eval(
            "ml-100k", "memrec", roles="standard", users=USERS, concurrency=32,
            out_dir=tmp_path, home=home, data_dir=data_dir(), progress=False,
        )  # fmt: skip
        calls = dict(server.calls)
    warmup.clear_warm_cache()
    assert len(result.users) == USERS and result.failures == 0
    # one propagation (warm-up) + synthesize + rank per user; each fault costs exactly one more
    # call (a retry or a repair) of the task it hit
    assert set(calls) == {"propagate", "synthesize", "rank"}
    assert all(USERS <= n <= USERS + len(FAULTS) for n in calls.values())
    assert sum(calls.values()) == 3 * USERS + len(FAULTS)
    warm = result.warmup.usage if result.warmup else None
    retries = sum(n.retries for n in result.nodes.values()) + (warm.retries if warm else 0)
    repairs = result.repairs + (warm.repairs if warm else 0)
    assert retries >= 1 and repairs >= 1  # the faults were met, absorbed and counted
    assert result.tokens_per_request > 0
    assert 0.0 <= result.metrics["H@1"].mean <= 1.0
    saved = load_run(tmp_path / f"{result.run}.json")
    assert saved.roles == "standard" and len(saved.ranks) == USERS
