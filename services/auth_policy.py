"""The server's auth policy: which mode it runs in, its token table, and who may do what.

Modes (``MEMREC_AUTH``):

- ``tokens`` (the default): every caller sends a token from ``MEMREC_AUTH_TOKENS`` (JSON) or the
  JSON file named by ``MEMREC_AUTH_TOKENS_FILE``: ``{"<token>": "<user_id>"}`` or
  ``{"<token>": {"identity": "<name>", "admin": true}}``. A missing or malformed table refuses
  to start.
- ``off``: open mode, every caller is a local admin. Only on a loopback bind (127.0.0.0/8, ::1,
  localhost) and only when chosen explicitly; announced at startup.

``MEMREC_AUTH_STUDIO=admin`` makes LangGraph Studio's anonymous local user an admin (for local
debugging with tokens on); it is refused on any other bind.

:func:`check_server_policy` is what the server runs at startup (``services/auth_app.py``) and what
``memrec serve`` runs before it starts the server: it raises :class:`PolicyError` with a message
saying what to set.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from schemas.context import MemRecContext
from schemas.tenancy import (
    INTERNAL_IDENTITY,
    INTERNAL_PERMISSION,
    USER_PERMISSION,
    InternalService,
    as_internal_service,
    is_internal,
)

MODE_ENV = "MEMREC_AUTH"
TOKENS_ENV = "MEMREC_AUTH_TOKENS"
TOKENS_FILE_ENV = "MEMREC_AUTH_TOKENS_FILE"
STUDIO_ENV = "MEMREC_AUTH_STUDIO"
BIND_ENV = "LANGGRAPH_API_URL"  # set by `langgraph dev` to the URL it serves
ADMIN = "admin"
LOCAL_ADMIN = "local-admin"
MIN_TOKEN_CHARS = 16

Mode = Literal["tokens", "off"]

# Users run recommend and chat, for themselves only.
USER_GRAPHS = ("recommend", "chat")
# Context keys a user may set on a run, with an upper bound for the numeric ones. Everything
# else (store location, model endpoints, role models, fan-out of writes to other users, the
# dataset, timeouts, raw uncurated neighbours) is the operator's choice.
USER_CONTEXT_BOUNDS: dict[str, float | None] = {
    "k": 64,
    "min_users": 64,
    "min_items": 64,
    "tau": 8000,
    "n_facets": 16,
    "collab_read": None,
    "rules": None,
    "memory": None,
}
CONTEXT_KEYS = frozenset(f.name for f in fields(MemRecContext))
# State keys a user may write directly (state updates, command.update): what they could send
# as input anyway. Curated neighbours, memories and packed context come from the server only.
USER_STATE_KEYS = frozenset({"user_id", "candidates", "request", "feedback", "messages"})


class PolicyError(RuntimeError):
    """The server's auth settings are unsafe or malformed; the message says what to set."""


class TokenConfigError(PolicyError, ValueError):
    """The token table is malformed; the message says what is accepted."""


@dataclass(frozen=True)
class Policy:
    """What the server enforces, from the environment at startup."""

    mode: Mode
    bind: str  # the host the server serves on ("" when unknown)
    studio_admin: bool
    users: int  # tokens of users (0 in open mode)
    admins: int  # tokens of admins

    def announcement(self) -> str:
        """The line the server logs at startup."""
        if self.mode == "off":
            return (
                f"{MODE_ENV}=off: OPEN MODE on {self.bind}: every caller is an admin, no token "
                "is checked. For local development only; set a token table before sharing it."
            )
        studio = "; Studio's local user is an admin" if self.studio_admin else ""
        return (
            f"auth on: {self.users} user token(s), {self.admins} admin token(s); users reach "
            f"only their own threads, runs, memory and store items{studio}"
        )


def _parse_tokens(raw: str, where: str) -> dict[str, tuple[str, bool]]:
    """``{token: user_id | {"identity": str, "admin": bool}}`` -> token -> (identity, admin)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise TokenConfigError(f"{where} is not JSON: {err}") from err
    if not isinstance(data, dict) or not data:
        raise TokenConfigError(f"{where} must be a non-empty JSON object {{token: user_id}}")
    out: dict[str, tuple[str, bool]] = {}
    for token, value in data.items():
        if isinstance(value, str):
            identity, admin = value, False
        elif isinstance(value, dict) and isinstance(value.get("identity"), str):
            admin_flag = value.get("admin", False)
            if not isinstance(admin_flag, bool):
                raise TokenConfigError(f'{where}: "admin" must be true or false')
            identity, admin = value["identity"], admin_flag
        else:
            raise TokenConfigError(
                f"{where}: the value of a token must be a user id or "
                '{"identity": "<name>", "admin": true|false}'
            )
        if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or " " in token:
            raise TokenConfigError(
                f"{where}: tokens need at least {MIN_TOKEN_CHARS} printable characters without "
                "spaces (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        if not identity.strip() or identity != identity.strip():
            raise TokenConfigError(f"{where}: identities must be non-empty, without outer spaces")
        if identity == INTERNAL_IDENTITY:
            raise TokenConfigError(f"{where}: the identity {INTERNAL_IDENTITY!r} is reserved")
        out[token] = (identity, admin)
    return out


@lru_cache(maxsize=4)
def _tokens_cached(env: str, file: str, mtime: float) -> dict[str, tuple[str, bool]]:
    tokens: dict[str, tuple[str, bool]] = {}
    if file:
        try:
            text = Path(file).read_text("utf-8")
        except OSError as err:
            raise TokenConfigError(f"{TOKENS_FILE_ENV}={file}: cannot read it ({err})") from err
        tokens |= _parse_tokens(text, f"{TOKENS_FILE_ENV}={file}")
    if env:
        tokens |= _parse_tokens(env, TOKENS_ENV)
    return tokens


def load_tokens(environ: Mapping[str, str] | None = None) -> dict[str, tuple[str, bool]]:
    """The token table (re-read when the variables or the file change); {} when none is set."""
    env = os.environ if environ is None else environ
    file = env.get(TOKENS_FILE_ENV, "").strip()
    mtime = Path(file).stat().st_mtime if file and Path(file).exists() else 0.0
    return _tokens_cached(env.get(TOKENS_ENV, "").strip(), file, mtime)


def lookup(token: str) -> tuple[str, bool] | None:
    """(identity, admin) of a token, compared in constant time; None when unknown."""
    found = None
    for known, who in load_tokens().items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = who
    return found


def auth_mode(environ: Mapping[str, str] | None = None) -> Mode:
    """``MEMREC_AUTH``: tokens (default) or off."""
    env = os.environ if environ is None else environ
    value = env.get(MODE_ENV, "").strip().lower() or "tokens"
    if value not in ("tokens", "off"):
        raise PolicyError(f"{MODE_ENV}={value!r}: accepted values are 'tokens' (default) and 'off'")
    return value  # type: ignore[return-value]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_host(environ: Mapping[str, str] | None = None) -> str:
    """The host the server serves on, from the URL `langgraph dev` sets ("" when unknown)."""
    env = os.environ if environ is None else environ
    url = env.get(BIND_ENV, "").strip()
    return (urlsplit(url).hostname or "") if url else ""


def check_server_policy(
    environ: Mapping[str, str] | None = None, *, host: str | None = None
) -> Policy:
    """The policy for this environment and bind, or PolicyError saying what to set."""
    env = os.environ if environ is None else environ
    bind = bind_host(env) if host is None else host
    mode = auth_mode(env)
    has_table = bool(env.get(TOKENS_ENV, "").strip() or env.get(TOKENS_FILE_ENV, "").strip())
    studio = env.get(STUDIO_ENV, "").strip().lower()
    if studio not in ("", "none", ADMIN):
        raise PolicyError(f"{STUDIO_ENV}={studio!r}: accepted values are 'none' (default), 'admin'")
    where = bind or "an unknown address"
    if studio == ADMIN and not is_loopback(bind):
        raise PolicyError(
            f"{STUDIO_ENV}=admin makes Studio's anonymous user an admin; it is allowed only on a "
            f"loopback bind (127.0.0.1), not on {where}. Unset it."
        )
    if mode == "off":
        if has_table:
            raise PolicyError(
                f"{MODE_ENV}=off but a token table is set ({TOKENS_ENV} / {TOKENS_FILE_ENV}): "
                f"unset {MODE_ENV} to enforce the tokens, or unset the table for open local mode"
            )
        if not is_loopback(bind):
            raise PolicyError(
                f"{MODE_ENV}=off (open mode) is allowed only on a loopback bind (127.0.0.1), not "
                f'on {where}. Set {TOKENS_ENV}=\'{{"<token>": "<user_id>", "<admin token>": '
                f'{{"identity": "ops", "admin": true}}}}\' (or {TOKENS_FILE_ENV}=<file>) and '
                f"unset {MODE_ENV}."
            )
        return Policy("off", bind, studio_admin=True, users=0, admins=0)
    if not has_table:
        raise PolicyError(
            f'no token table: set {TOKENS_ENV}=\'{{"<token>": "<user_id>", "<admin token>": '
            f'{{"identity": "ops", "admin": true}}}}\' (or {TOKENS_FILE_ENV}=<path to that JSON>); '
            f"for local development on 127.0.0.1 only, {MODE_ENV}=off runs the server open"
        )
    table = load_tokens(env)
    admins = sum(1 for _, admin in table.values() if admin)
    return Policy("tokens", bind, studio == ADMIN, users=len(table) - admins, admins=admins)


# ------------------------------------------------------------------ run requests of users


def check_context(where: str, values: object) -> None:
    """A user's run context / configurable: only the user-settable keys, within bounds."""
    if values is None:
        return
    if not isinstance(values, dict):
        raise PermissionError(f"{where} must be a JSON object")
    for key, value in values.items():
        if key not in CONTEXT_KEYS:
            continue  # not a MemRec setting (the server's own configurable keys)
        if key not in USER_CONTEXT_BOUNDS:
            allowed = ", ".join(sorted(USER_CONTEXT_BOUNDS))
            raise PermissionError(
                f"{where}.{key} is for admin tokens only; users may set {allowed}"
            )
        bound = USER_CONTEXT_BOUNDS[key]
        if bound is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= bound
        ):
            raise PermissionError(f"{where}.{key} must be an integer from 0 to {int(bound)}")


def check_state_values(identity: str, where: str, values: object) -> None:
    """State a user writes directly: only keys they could send as input, their own user_id."""
    if values is None:
        return
    items: list[tuple[Any, Any]]
    if isinstance(values, dict):
        items = list(values.items())
    elif isinstance(values, list) and all(
        isinstance(p, list | tuple) and len(p) == 2 for p in values
    ):
        items = [(p[0], p[1]) for p in values]
    else:
        raise PermissionError(f"{where} must be a JSON object of state keys")
    for key, value in items:
        if key not in USER_STATE_KEYS:
            allowed = ", ".join(sorted(USER_STATE_KEYS))
            raise PermissionError(f"{where}: users may write only {allowed}, not {key!r}")
        if key == "user_id" and (not isinstance(value, str) or value.strip() != identity):
            raise PermissionError(f"{where}: user_id must be your own user id {identity!r}")


def check_command(identity: str, command: object) -> None:
    """A user's run command: resume, an update of user-writable keys, goto by node name."""
    if command is None:
        return
    if not isinstance(command, dict):
        raise PermissionError("command must be a JSON object")
    unknown = sorted(set(command) - {"resume", "update", "goto"})
    if unknown:
        raise PermissionError(f"command keys {unknown} are not accepted (resume, update, goto)")
    check_state_values(identity, "command.update", command.get("update"))
    goto = command.get("goto")
    targets = goto if isinstance(goto, list) else [goto] if goto is not None else []
    if not all(isinstance(t, str) for t in targets):
        raise PermissionError("command.goto takes node names only (no Send with its own state)")


def check_run_request(
    identity: str, graph: str, kwargs: dict[str, Any], thread_id: object = None
) -> None:
    """A user's run: their own user_id, a safe command, user-settable context only."""
    inp = kwargs.get("input")
    if inp is not None:  # None: continue or resume the thread's run, nothing to bind
        if not isinstance(inp, dict):
            raise PermissionError(f"{graph} input must be a JSON object")
        user_id = inp.get("user_id")
        if user_id is None:
            inp["user_id"] = identity  # messages-only clients: the user is the caller
        elif not isinstance(user_id, str) or user_id.strip() != identity:
            raise PermissionError(f"you may run {graph} only for your own user_id {identity!r}")
    check_command(identity, kwargs.get("command"))
    check_context("context", kwargs.get("context"))
    config = kwargs.get("config") or {}
    if not isinstance(config, dict):
        raise PermissionError("config must be a JSON object")
    configurable = config.get("configurable") or {}
    check_context("config.configurable", configurable)
    named = configurable.get("thread_id") if isinstance(configurable, dict) else None
    if named is not None and (thread_id is None or str(named) != str(thread_id)):
        raise PermissionError("config.configurable.thread_id may only name the run's own thread")
    if isinstance(configurable, dict) and any(str(k).startswith("__pregel") for k in configurable):
        raise PermissionError("config.configurable may not set the runtime's __pregel keys")


__all__ = [
    "ADMIN",
    "INTERNAL_PERMISSION",
    "LOCAL_ADMIN",
    "USER_PERMISSION",
    "InternalService",
    "Policy",
    "PolicyError",
    "TokenConfigError",
    "check_run_request",
    "as_internal_service",
    "check_server_policy",
    "is_internal",
    "lookup",
]
