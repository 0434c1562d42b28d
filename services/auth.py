"""LangGraph custom auth: bearer tokens map to users; each user sees only their own data.

Enable it with ``"auth": {"path": "./services/auth.py:auth"}`` in ``langgraph.json``.

Tokens come from ``MEMREC_AUTH_TOKENS`` (JSON) or the JSON file named by
``MEMREC_AUTH_TOKENS_FILE``: ``{"<token>": "<user_id>"}`` or
``{"<token>": {"identity": "<name>", "admin": true}}``. Rules:

- a user may run only the ``recommend`` and ``chat`` assistants, only for themself (an input
  ``user_id`` must equal their identity; a missing one is filled in), and may not point the run at
  another store or model endpoint (context keys in :data:`ADMIN_ONLY_CONTEXT`);
- threads carry ``metadata.owner``; a user reads, searches, updates and runs only their own;
- the LangGraph store is scoped to a namespace starting with the user's identity;
- admins (evaluation, rules, propagation) may do anything;
- Studio's local no-auth user gets nothing unless ``MEMREC_AUTH_STUDIO=admin`` (development only).

With no token table configured at all, the server runs in local-development mode: every caller
is a local admin and a warning is logged. Set ``MEMREC_AUTH_TOKENS`` before exposing a server.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from langgraph_sdk import Auth

logger = logging.getLogger(__name__)

TOKENS_ENV = "MEMREC_AUTH_TOKENS"
TOKENS_FILE_ENV = "MEMREC_AUTH_TOKENS_FILE"
STUDIO_ENV = "MEMREC_AUTH_STUDIO"
ADMIN = "admin"
USER_GRAPHS = ("recommend", "chat")
ADMIN_ONLY_CONTEXT = frozenset(
    {"home", "chroma_url", "base_url", "lmmem", "llmrec", "roles", "dataset", "collab_write"}
)
# langgraph-api names the default assistant of graph G uuid5(NAMESPACE_GRAPH, G).
NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
_USER_ASSISTANTS = {str(uuid5(NAMESPACE_GRAPH, g)): g for g in USER_GRAPHS}

auth = Auth()


class TokenConfigError(ValueError):
    """The token table is malformed; the message says what is accepted."""


def _parse_tokens(raw: str, where: str) -> dict[str, tuple[str, bool]]:
    """``{token: user_id | {"identity": str, "admin": bool}}`` -> token -> (identity, admin)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise TokenConfigError(f"{where} is not JSON: {err}") from err
    if not isinstance(data, dict):
        raise TokenConfigError(f"{where} must be a JSON object {{token: user_id}}")
    out: dict[str, tuple[str, bool]] = {}
    for token, value in data.items():
        if isinstance(value, str):
            identity, admin = value, False
        elif isinstance(value, dict) and isinstance(value.get("identity"), str):
            identity, admin = value["identity"], bool(value.get("admin", False))
        else:
            raise TokenConfigError(
                f"{where}: the value of a token must be a user id or "
                '{"identity": "<name>", "admin": true|false}'
            )
        if len(token) < 8 or not identity:
            raise TokenConfigError(f"{where}: tokens need >= 8 characters and a non-empty identity")
        out[token] = (identity, admin)
    return out


@lru_cache(maxsize=4)
def _tokens_cached(env: str, file: str, mtime: float) -> dict[str, tuple[str, bool]]:
    tokens: dict[str, tuple[str, bool]] = {}
    if file:
        tokens |= _parse_tokens(Path(file).read_text("utf-8"), f"{TOKENS_FILE_ENV}={file}")
    if env:
        tokens |= _parse_tokens(env, TOKENS_ENV)
    return tokens


def load_tokens() -> dict[str, tuple[str, bool]]:
    """The token table from the environment (re-read when the variables or the file change)."""
    file = os.environ.get(TOKENS_FILE_ENV, "")
    mtime = Path(file).stat().st_mtime if file and Path(file).exists() else 0.0
    return _tokens_cached(os.environ.get(TOKENS_ENV, ""), file, mtime)


def lookup(token: str) -> tuple[str, bool] | None:
    """(identity, admin) of a token, compared in constant time; None when unknown."""
    found = None
    for known, who in load_tokens().items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = who
    return found


LOCAL_ADMIN = "local-admin"
_warned_open = False


def auth_enabled() -> bool:
    """Whether a token table is configured (otherwise: local-development mode)."""
    return bool(os.environ.get(TOKENS_ENV, "").strip() or os.environ.get(TOKENS_FILE_ENV, ""))


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    """``Authorization: Bearer <token>`` -> the user; 401 otherwise."""
    global _warned_open
    if not auth_enabled():
        if not _warned_open:
            logger.warning("no %s configured: auth is open (local development only)", TOKENS_ENV)
            _warned_open = True
        return {"identity": LOCAL_ADMIN, "permissions": [ADMIN]}
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Auth.exceptions.HTTPException(
            status_code=401, detail="send 'Authorization: Bearer <token>'"
        )
    try:
        who = lookup(token.strip())
    except (TokenConfigError, OSError) as err:
        logger.error("auth token table unusable: %s", err)
        raise Auth.exceptions.HTTPException(status_code=500, detail="auth misconfigured") from err
    if who is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="unknown token")
    identity, admin = who
    return {"identity": identity, "permissions": [ADMIN] if admin else ["user"]}


def _studio(ctx: Auth.types.AuthContext) -> bool:
    return isinstance(ctx.user, Auth.types.StudioUser)


def is_admin(ctx: Auth.types.AuthContext) -> bool:
    """Admins: admin tokens, and Studio's user only when explicitly allowed."""
    if _studio(ctx):
        return not auth_enabled() or os.environ.get(STUDIO_ENV, "").strip().lower() == ADMIN
    return ADMIN in (ctx.permissions or [])


def _forbid(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=403, detail=detail)


def _owner_filter(ctx: Auth.types.AuthContext) -> Auth.types.FilterType | None:
    if is_admin(ctx):
        return None
    if _studio(ctx):
        raise _forbid(f"Studio access is disabled: set {STUDIO_ENV}=admin for local development")
    return {"owner": ctx.user.identity}


@auth.on
async def admins_only(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Default: anything not opened below is for admins only."""
    if not is_admin(ctx):
        raise _forbid(f"{ctx.resource}.{ctx.action} is for admin tokens only")
    return True


@auth.on.threads.create
async def own_new_thread(ctx: Auth.types.AuthContext, value: Any) -> None:
    """A new thread belongs to its creator."""
    _owner_filter(ctx)  # refuses Studio's anonymous user
    if value.get("metadata") is None:
        value["metadata"] = {}
    value["metadata"]["owner"] = ctx.user.identity  # in place: the server keeps this dict


async def own_threads(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """Users see and change only the threads they own."""
    return _owner_filter(ctx)


for _action in (auth.on.threads.read, auth.on.threads.search, auth.on.threads.update):
    _action(own_threads)
auth.on.threads.delete(own_threads)


def check_run_input(identity: str, graph: str, kwargs: dict[str, Any]) -> None:
    """A user's run: their own user_id only, no admin-only context keys (raises 403)."""
    inp = kwargs.get("input")
    if inp is None:
        inp = kwargs["input"] = {}
    if not isinstance(inp, dict):
        raise _forbid(f"{graph} input must be a JSON object")
    user_id = inp.get("user_id")
    if user_id is None:
        inp["user_id"] = identity
    elif not isinstance(user_id, str) or user_id.strip() != identity:
        raise _forbid(f"you may run {graph} only for your own user_id {identity!r}")
    config = kwargs.get("config") or {}
    for where, values in (
        ("context", kwargs.get("context") or {}),
        ("config.configurable", config.get("configurable") or {}),
    ):
        if not isinstance(values, dict):
            raise _forbid(f"{where} must be a JSON object")
        blocked = sorted(ADMIN_ONLY_CONTEXT & set(values))
        if blocked:
            raise _forbid(f"{where} keys {blocked} are for admin tokens only")


@auth.on.threads.create_run
async def own_runs(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """Users run recommend / chat for themselves, on their own threads."""
    if is_admin(ctx):
        return None
    owner = _owner_filter(ctx)
    graph = _USER_ASSISTANTS.get(str(value.get("assistant_id")))
    if graph is None:
        raise _forbid(f"users may run only the {', '.join(USER_GRAPHS)} assistants")
    check_run_input(ctx.user.identity, graph, value.setdefault("kwargs", {}))
    if value.get("metadata") is None:
        value["metadata"] = {}
    value["metadata"]["owner"] = ctx.user.identity  # a thread this run creates is theirs
    return owner


async def list_assistants(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Any known user may look up assistants (to find recommend and chat)."""
    if _studio(ctx) and not is_admin(ctx):
        raise _forbid(f"Studio access is disabled: set {STUDIO_ENV}=admin for local development")
    return True


auth.on.assistants.read(list_assistants)
auth.on.assistants.search(list_assistants)


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: Any) -> None:
    """Store items of a user live under a namespace that starts with their identity."""
    if is_admin(ctx):
        return
    _owner_filter(ctx)
    namespace = tuple(value.get("namespace") or ())
    if not namespace or namespace[0] != ctx.user.identity:
        value["namespace"] = (ctx.user.identity, *namespace)
