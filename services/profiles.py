"""Initial user memories written by an LLM LMMem (``memrec index --roles ...``), kill-safe.

Each memory is stored as soon as a few have arrived (every ``flush_every``), so a killed run keeps
what it wrote and the next run writes only the users still missing. Calls run at the role's
concurrency (its endpoint's bound). A user whose call failed gets the offline profile, stored with
a source that says so (``profile:offline fallback``), and the run reports how many and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from pydantic import BaseModel, Field

from memory_store.memories import MemoryStore
from roles.factory import model_client
from roles.llm_roles import LLMLMMem
from roles.offline_roles import OfflineProfiles
from schemas.context import MemRecContext
from schemas.records import ProfileInput

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (step, done, total)
FALLBACK_SOURCE = "profile:offline fallback"


class ProfileRun(BaseModel):
    """What one run of the profile writer did."""

    model: str = Field(description="the LMMem model asked")
    asked: int = Field(description="users without a memory when the run started")
    written: int = Field(default=0, description="memories stored by this run")
    by_model: int = Field(default=0, description="of which the model wrote")
    fallbacks: int = Field(default=0, description="of which the offline profile wrote")
    reasons: dict[str, int] = Field(default_factory=dict, description="fallback reasons, counted")
    tokens_in: int = 0
    tokens_out: int = 0
    estimated: bool = False


async def write_profiles(
    store: MemoryStore,
    inputs: list[ProfileInput],
    ctx: MemRecContext,
    progress: Progress,
    *,
    flush_every: int = 8,
) -> ProfileRun:
    """Write the memories of ``inputs`` with the context's LMMem, storing them as they come."""
    client = model_client(ctx, "lmmem")
    if client is None:
        raise ValueError("write_profiles needs an LLM LMMem: the context's LMMem is offline")
    role = LLMLMMem(client, OfflineProfiles())  # type: ignore[arg-type]
    run = ProfileRun(model=client.name, asked=len(inputs))
    reasons: Counter[str] = Counter()
    pending: list[tuple[str, str, str]] = []  # (user, text, source)
    gate = asyncio.Semaphore(max(1, client.settings.concurrency))
    lock = asyncio.Lock()

    async def flush() -> None:
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        for source in dict.fromkeys(s for _, _, s in batch):
            items = [(u, t) for u, t, s in batch if s == source]
            run.written += await asyncio.to_thread(store.bulk_init, "user", items, source)
        progress("profiles", run.written, len(inputs))

    async def one(inp: ProfileInput) -> None:
        async with gate:
            out = await role.profile(inp)
        usage = out.usage
        run.tokens_in += usage.tokens_in
        run.tokens_out += usage.tokens_out
        run.estimated = run.estimated or usage.estimated
        if usage.fallbacks:
            run.fallbacks += 1
            reasons[usage.fallback_reason or "unknown"] += 1
            source = FALLBACK_SOURCE
        else:
            run.by_model += 1
            source = f"profile:{client.name}"
        async with lock:
            pending.append((inp.user_id, out.value.memory, source))
            if len(pending) >= flush_every:
                await flush()

    try:
        await asyncio.gather(*(one(inp) for inp in inputs))
    finally:  # a cancelled or failed run still keeps what arrived
        async with lock:
            await flush()
    run.reasons = dict(reasons.most_common())
    return run


def profile_notice(run: ProfileRun) -> str | None:
    """One line when the offline profile had to write some memories (which model, why)."""
    if not run.fallbacks:
        return None
    top = ", ".join(f"{why} ({n})" for why, n in list(run.reasons.items())[:3])
    return (
        f"model {run.model} could not write {run.fallbacks} of {run.asked} user memories "
        f"({top}), so the offline profile did; they are stored with source '{FALLBACK_SOURCE}'"
    )
