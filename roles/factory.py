"""Build the LMMem / LLMRec pair a run context asks for (offline, an LLM, or a mix).

Each LLM role gets a model client built once (``roles/models.make_model_client``) with its
settings (``roles/settings.py``: endpoint defaults, then the context's overrides). The pairs are
cached on the workspace they serve (``Workspace.derived``), keyed by the specs, endpoint and
settings, so clients are reused across requests and dropped with their workspace.
"""

from __future__ import annotations

from typing import Any

from memory_store.workspace import Workspace
from roles.client import ModelClient
from roles.models import default_preset, get_preset, make_model_client
from roles.offline_roles import OfflineLLMRec, OfflineLMMem
from roles.settings import Role, RoleSettings, role_settings
from schemas.context import MemRecContext
from schemas.model_spec import ModelSpec
from schemas.roles import LLMRec, LMMem

_ROLES_KEY = "roles"


def role_specs(ctx: MemRecContext) -> tuple[str, str]:
    """The (LMMem, LLMRec) model specs of a context: explicit specs override the preset."""
    preset = get_preset(ctx.roles or default_preset())
    return ctx.lmmem or preset.lmmem, ctx.llmrec or preset.llmrec


def settings_for(ctx: MemRecContext, role: Role, spec: str) -> RoleSettings | None:
    """The settings of a role's model (None for the offline role)."""
    if spec == "offline":
        return None
    return role_settings(ctx, role, ModelSpec.parse(spec, base_url=ctx.base_url))


def model_client(ctx: MemRecContext, role: Role) -> ModelClient | None:
    """A role's model client for this context (None when the role is offline)."""
    spec = role_specs(ctx)[0 if role == "lmmem" else 1]
    settings = settings_for(ctx, role, spec)
    if settings is None:
        return None
    return make_model_client(spec, settings, base_url=ctx.base_url)


def build_roles(ctx: MemRecContext, ws: Workspace) -> tuple[LMMem, LLMRec]:
    """The roles for this context (cached on ``ws``: clients are reused across requests)."""
    key = (
        *role_specs(ctx),
        ctx.base_url or "",
        ctx.timeout_s,
        ctx.max_tokens,
        ctx.model_concurrency,
        ctx.retries,
        tuple(sorted((r, tuple(sorted(v.items()))) for r, v in (ctx.role_settings or {}).items())),
    )
    with ws.lock:
        cache: dict[tuple[Any, ...], tuple[LMMem, LLMRec]] = ws.derived.setdefault(_ROLES_KEY, {})
        if key not in cache:
            cache[key] = (_lmmem(ctx, ws), _llmrec(ctx, ws))
        return cache[key]


def _lmmem(ctx: MemRecContext, ws: Workspace) -> LMMem:
    offline = OfflineLMMem(ws)
    client = model_client(ctx, "lmmem")
    if client is None:
        return offline
    from roles.llm_roles import LLMLMMem

    return LLMLMMem(client, offline)


def _llmrec(ctx: MemRecContext, ws: Workspace) -> LLMRec:
    offline = OfflineLLMRec(ws)
    client = model_client(ctx, "llmrec")
    if client is None:
        return offline
    from roles.llm_roles import LLMLLMRec

    return LLMLLMRec(client, offline)
