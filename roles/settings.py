"""How each role talks to its endpoint: timeout, retries, concurrency, token caps, streaming.

Defaults follow the endpoint. A hosted API (``openai:``, ``openai-compatible:`` on a public
address) answers in seconds, runs many calls at once and cancels abandoned ones, so a timed-out
call is worth retrying. A local server (``local:``, ``ollama:``, ``vllm:``, or any spec whose base
URL is on this machine or a private network) may need a minute to read a MemRec prompt on a CPU,
and llama.cpp's server keeps generating a non-streamed request its client abandoned (one slot:
the retry then queues behind its own original), so a timed-out call there is never retried with
the identical request; the ``local`` provider also streams its calls (a closed stream cancels the
generation) and runs one call at a time (a single-slot server; raise ``concurrency`` for vLLM).

Every default can be overridden for both roles (``MemRecContext.timeout_s``, ``max_tokens``,
``model_concurrency``, ``retries``; CLI ``--timeout`` etc.; environment ``MEMREC_TIMEOUT_S``, ...)
or per role (``MemRecContext.role_settings``, CLI ``--timeout lmmem=600,llmrec=60``,
``MEMREC_ROLE_SETTINGS``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlparse

from schemas.context import MemRecContext
from schemas.model_spec import ModelConfigError, ModelSpec

Role = Literal["lmmem", "llmrec"]
ROLES: tuple[Role, ...] = ("lmmem", "llmrec")
_LOCAL_PROVIDERS = frozenset({"local", "ollama", "vllm"})
_FIELDS = ("timeout_s", "max_tokens", "concurrency", "retries", "stream", "retry_timeouts")


@dataclass(frozen=True)
class RoleSettings:
    """One role's call policy (see the module docstring for the defaults)."""

    timeout_s: float = 30.0  # wall clock per attempt (a streamed call included)
    retries: int = 2  # transport retries after the first attempt (429, 5xx, dropped sockets)
    concurrency: int = 64  # calls in flight per role and event loop
    max_tokens: int | None = None  # cap on every call's completion tokens (None: per task)
    stream: bool = False  # stream structured calls, so that a timeout cancels the generation
    retry_timeouts: bool = True  # False: a timed-out call is not sent again (local servers)
    backoff_base_s: float = 0.5  # first backoff; doubles per retry, with jitter
    probe_system: bool = False  # check once whether the server drops system messages

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ModelConfigError(f"timeout must be positive seconds, got {self.timeout_s}")
        if self.retries < 0:
            raise ModelConfigError(f"retries must be 0 or more, got {self.retries}")
        if self.concurrency < 1:
            raise ModelConfigError(f"model concurrency must be >= 1, got {self.concurrency}")
        if self.max_tokens is not None and self.max_tokens < 16:
            raise ModelConfigError(f"max_tokens must be at least 16, got {self.max_tokens}")

    def cap(self, task_tokens: int) -> int:
        """The max_tokens of one call: the task's own budget, within the configured cap."""
        return min(task_tokens, self.max_tokens) if self.max_tokens else task_tokens


HOSTED = RoleSettings()
LOCAL = RoleSettings(timeout_s=300.0, retries=1, retry_timeouts=False)
LOCAL_SERVER = replace(LOCAL, concurrency=1, stream=True, probe_system=True)


def is_private_url(url: str | None) -> bool:
    """Whether a base URL points at this machine or a private network (a self-hosted server)."""
    host = (urlparse(url).hostname or "") if url else ""
    if host in ("localhost", "host.docker.internal") or host.endswith((".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def endpoint_defaults(spec: ModelSpec) -> RoleSettings:
    """The defaults for an endpoint: hosted, local, or llama.cpp-like local server."""
    if spec.provider == "local":
        return LOCAL_SERVER
    if spec.provider in _LOCAL_PROVIDERS or is_private_url(spec.base_url):
        return LOCAL
    return HOSTED


def role_settings(ctx: MemRecContext, role: Role, spec: ModelSpec) -> RoleSettings:
    """A role's settings: endpoint defaults, then the context's fields, then its per-role ones."""
    settings = endpoint_defaults(spec)
    common: dict[str, Any] = {
        "timeout_s": ctx.timeout_s,
        "max_tokens": ctx.max_tokens,
        "concurrency": ctx.model_concurrency,
        "retries": ctx.retries,
    }
    changes = {k: v for k, v in common.items() if v is not None}
    per_role = (ctx.role_settings or {}).get(role) or {}
    unknown = sorted(set(per_role) - set(_FIELDS))
    if unknown:
        raise ModelConfigError(
            f"role_settings[{role!r}] has unknown keys {unknown}: accepted {', '.join(_FIELDS)}"
        )
    changes.update({k: v for k, v in per_role.items() if v is not None})
    return replace(settings, **_typed(changes))


def _typed(changes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("stream", "retry_timeouts"):
            out[key] = bool(value)
        elif key == "timeout_s":
            out[key] = float(value)
        else:
            out[key] = int(value)
    return out


def parse_setting(option: str, text: str | None, kind: type[float] | type[int]) -> dict[str, Any]:
    """``--timeout 300`` or ``--timeout lmmem=600,llmrec=60`` as context fields.

    Returns ``{"<field>": value}`` for a plain number (both roles) or
    ``{"role_settings": {"lmmem": {...}, ...}}`` for per-role values.
    """
    field = {
        "timeout": "timeout_s",
        "max-tokens": "max_tokens",
        "model-concurrency": "concurrency",
        "retries": "retries",
    }[option]
    context_field = {"concurrency": "model_concurrency"}.get(field, field)
    if text is None or not text.strip():
        return {}
    text = text.strip()
    if "=" not in text:
        return {context_field: _number(option, text, kind)}
    per_role: dict[str, dict[str, Any]] = {}
    for part in text.split(","):
        role, sep, value = part.partition("=")
        role = role.strip()
        if not sep or role not in ROLES:
            raise ModelConfigError(
                f"--{option} {text!r}: write a number for both roles or "
                f"'lmmem=<n>,llmrec=<n>' (got {part.strip()!r})"
            )
        per_role[role] = {field: _number(option, value.strip(), kind)}
    return {"role_settings": per_role}


def _number(option: str, text: str, kind: type[float] | type[int]) -> float | int:
    try:
        return kind(text)
    except ValueError:
        raise ModelConfigError(
            f"--{option} {text!r} is not a {kind.__name__}: write e.g. --{option} "
            f"{'300' if kind is float else '2'} or --{option} lmmem=...,llmrec=..."
        ) from None


def merge_role_settings(*parts: dict[str, Any]) -> dict[str, Any]:
    """Combine several ``parse_setting`` results (per-role dicts merged role by role)."""
    out: dict[str, Any] = {}
    roles: dict[str, dict[str, Any]] = {}
    for part in parts:
        for key, value in part.items():
            if key == "role_settings":
                for role, values in value.items():
                    roles.setdefault(role, {}).update(values)
            else:
                out[key] = value
    if roles:
        out["role_settings"] = roles
    return out
