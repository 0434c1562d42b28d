"""`memrec index` with an LLM LMMem: each user's initial memory is written by the model."""

from pathlib import Path

import pytest

from memory_store.workspace import open_workspace
from services.index import build_index
from tests.support.openai_server import OpenAITestServer, Reply

pytestmark = pytest.mark.integration


def _dataset(folder: Path, users: int = 5, items: int = 30) -> Path:
    folder.mkdir()
    rows = ["user_id,item_id,timestamp"]
    rows += [f"u{u},i{(3 * u + j) % items},{100 * u + j}" for u in range(users) for j in range(6)]
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    lines = ["item_id,title,genres"] + [f"i{i},Title {i},g{i % 3}|h{i % 2}" for i in range(items)]
    (folder / "items.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_lmmem_writes_the_initial_user_memories(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "d")

    def user_u0_always_fails(request):  # malformed twice (answer + repair): offline fallback
        return Reply(fault="invalid_json") if "User u0." in str(request.messages) else None

    with OpenAITestServer(handler=user_u0_always_fails) as server:
        spec = f"openai-compatible:test-model@{server.url}/v1"
        build_index(str(dataset), home=tmp_path / "home", lmmem=spec)
        profiles = server.chat_requests("profile")
    ws = open_workspace(str(dataset), home=tmp_path / "home")
    texts = {u: ws.memory_text("user", u) for u in ws.dataset.user_ids}
    written = [t for t in texts.values() if t.startswith("Test profile")]
    fallback = [t for t in texts.values() if not t.startswith("Test profile")]
    assert len(written) == 4 and len(fallback) == 1
    assert texts["u0"] == fallback[0] and fallback[0].startswith("Interacted with")
    assert len(profiles) == 6  # one call per user, plus one repair for the user that failed
    # the prompt holds only that user's own train history, in a data block
    assert all("<<<HISTORY" in str(r.messages) for r in profiles)


async def test_profiles_are_stored_as_they_arrive_and_marked_when_the_fallback_wrote(
    tmp_path: Path,
) -> None:
    """A killed ``index --roles`` run keeps what arrived; fallbacks are stored with their source."""
    import asyncio

    from memory_store.opening import open_chroma
    from schemas.context import MemRecContext
    from schemas.records import ProfileInput
    from services.profiles import FALLBACK_SOURCE, write_profiles

    store = open_chroma(tmp_path / "store", None)
    inputs = [ProfileInput(user_id=f"u{n}", titles=[f"Title {n}"]) for n in range(6)]

    def slow_after_three(request):  # u0-u2 answer at once, u3 breaks, the rest never come
        text = str(request.messages)
        if "User u3." in text:
            return Reply.error(400)
        return Reply(delay_s=5.0) if any(f"User u{n}." in text for n in (4, 5)) else None

    with OpenAITestServer(handler=slow_after_three) as server:
        spec = f"openai-compatible:test-model@{server.url}/v1"
        ctx = MemRecContext(roles="offline", lmmem=spec, model_concurrency=1, timeout_s=60.0)
        run = asyncio.create_task(
            write_profiles(store, inputs, ctx, lambda *_: None, flush_every=1)
        )
        for _ in range(200):  # until u0-u3 are stored, then the run is killed
            await asyncio.sleep(0.05)
            if len(store.ids("user")) >= 4:
                break
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    assert sorted(store.ids("user")) == ["u0", "u1", "u2", "u3"]  # kept although killed
    assert store.get("user", "u0").source == "profile:" + spec
    assert store.get("user", "u3").source == FALLBACK_SOURCE  # the offline profile wrote it
