"""Build the LMMem / LLMRec pair a run context asks for (offline, an LLM, or a mix).

The pairs are cached on the workspace they serve (``Workspace.derived``), keyed by the model specs,
endpoint and timeout, so models are reused across requests and dropped with their workspace.
"""

from __future__ import annotations

from memory_store.workspace import Workspace
from roles.models import default_preset, get_preset, make_chat_model
from roles.offline_roles import OfflineLLMRec, OfflineLMMem
from schemas.context import MemRecContext
from schemas.roles import LLMRec, LMMem

_ROLES_KEY = "roles"


def role_specs(ctx: MemRecContext) -> tuple[str, str]:
    """The (LMMem, LLMRec) model specs of a context: explicit specs override the preset."""
    preset = get_preset(ctx.roles or default_preset())
    return ctx.lmmem or preset.lmmem, ctx.llmrec or preset.llmrec


def build_roles(ctx: MemRecContext, ws: Workspace) -> tuple[LMMem, LLMRec]:
    """The roles for this context (cached on ``ws``: models are reused across requests)."""
    mem_spec, rec_spec = role_specs(ctx)
    key = (mem_spec, rec_spec, ctx.base_url or "", ctx.timeout_s)
    with ws.lock:
        cache: dict[tuple[str, str, str, float], tuple[LMMem, LLMRec]] = ws.derived.setdefault(
            _ROLES_KEY, {}
        )
        if key not in cache:
            cache[key] = (_lmmem(mem_spec, ctx, ws), _llmrec(rec_spec, ctx, ws))
        return cache[key]


def _lmmem(spec: str, ctx: MemRecContext, ws: Workspace) -> LMMem:
    offline = OfflineLMMem(ws)
    if spec == "offline":
        return offline
    from roles.llm_roles import LLMLMMem

    model = make_chat_model(spec, base_url=ctx.base_url, timeout=ctx.timeout_s)
    return LLMLMMem(model, offline, timeout_s=ctx.timeout_s, name=spec)


def _llmrec(spec: str, ctx: MemRecContext, ws: Workspace) -> LLMRec:
    offline = OfflineLLMRec(ws)
    if spec == "offline":
        return offline
    from roles.llm_roles import LLMLLMRec

    model = make_chat_model(spec, base_url=ctx.base_url, timeout=ctx.timeout_s)
    return LLMLLMRec(model, offline, timeout_s=ctx.timeout_s, name=spec)
