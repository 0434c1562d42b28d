"""LangGraph custom auth: tokens map to users; each user reaches only their own data.

Enabled by ``"auth": {"path": "./services/auth.py:auth"}`` in ``langgraph.json``; the mode, the
token table and what a user may put in a run are in :mod:`services.auth_policy`. Rules:

- a token comes as ``Authorization: Bearer <token>`` or ``x-api-key: <token>`` (langgraph-sdk,
  Agent Chat UI); two different tokens in one request are refused;
- a user runs only the default ``recommend`` and ``chat`` assistants, only for themself (an input
  without ``user_id`` runs as the caller; ``input: null`` continues or resumes their thread), with
  commands and context a user may set (:func:`services.auth_policy.check_run_request`);
- threads carry ``metadata.owner``; a user creates, reads, searches, updates, copies, deletes and
  runs only their own, and cannot hand one over;
- store items of a user live under a namespace that starts with their identity;
- assistants: users see the server's default ones; creating or changing any is for admins;
- anything not opened here (crons, assistant writes, new resources) is for admins only;
- the server's own background runs (:class:`services.auth_policy.InternalService`) may start
  ``propagate`` runs and nothing else;
- Studio's anonymous local user gets nothing unless ``MEMREC_AUTH_STUDIO=admin`` (loopback only).
"""

from __future__ import annotations

import logging
import os
from typing import Any
from uuid import UUID, uuid5

from langgraph_sdk import Auth

from services.auth_policy import (
    ADMIN,
    LOCAL_ADMIN,
    STUDIO_ENV,
    USER_GRAPHS,
    USER_PERMISSION,
    PolicyError,
    auth_mode,
    check_run_request,
    is_internal,
    lookup,
)

logger = logging.getLogger(__name__)

# langgraph-api names the default assistant of graph G uuid5(NAMESPACE_GRAPH, G).
NAMESPACE_GRAPH = UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
_USER_ASSISTANTS = {str(uuid5(NAMESPACE_GRAPH, g)): g for g in USER_GRAPHS}
_PROPAGATE = str(uuid5(NAMESPACE_GRAPH, "propagate"))

auth = Auth()


def _unauthorized(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=401, detail=detail)


def _forbid(detail: str) -> Auth.exceptions.HTTPException:
    return Auth.exceptions.HTTPException(status_code=403, detail=detail)


def presented_token(authorization: str | None, api_key: str | None) -> str:
    """The token of a request: ``Authorization: Bearer`` or ``x-api-key`` (401 otherwise)."""
    bearer = None
    if authorization and authorization.strip():
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("send 'Authorization: Bearer <token>' or 'x-api-key: <token>'")
        bearer = value.strip()
    key = api_key.strip() if api_key and api_key.strip() else None
    if bearer and key and bearer != key:
        raise _unauthorized("two different tokens (Authorization and x-api-key): send one")
    token = bearer or key
    if not token:
        raise _unauthorized("send 'Authorization: Bearer <token>' or 'x-api-key: <token>'")
    return token


@auth.authenticate
async def authenticate(
    authorization: str | None, headers: dict[bytes, bytes] | None
) -> Auth.types.MinimalUserDict:
    """The caller's user from their token; 401 for none, an unknown one, or an unusable table."""
    try:
        mode = auth_mode()
    except PolicyError as err:
        logger.error("auth refused every request: %s", err)
        raise _unauthorized("the server's auth settings are unusable; see its log") from err
    if mode == "off":
        return {"identity": LOCAL_ADMIN, "permissions": [ADMIN]}
    raw_key = (headers or {}).get(b"x-api-key")
    token = presented_token(authorization, raw_key.decode("latin-1") if raw_key else None)
    try:
        who = lookup(token)
    except PolicyError as err:  # the table changed on disk and is now malformed: fail closed
        logger.error("auth token table unusable, every token refused: %s", err)
        raise _unauthorized("the server's token table is unusable; see its log") from err
    if who is None:
        raise _unauthorized("unknown token")
    identity, admin = who
    return {"identity": identity, "permissions": [ADMIN] if admin else [USER_PERMISSION]}


def _studio(ctx: Auth.types.AuthContext) -> bool:
    return isinstance(ctx.user, Auth.types.StudioUser)


def is_admin(ctx: Auth.types.AuthContext) -> bool:
    """Admins: admin tokens, open mode, and Studio's user only when explicitly allowed."""
    if is_internal(ctx.user):
        return False
    if _studio(ctx):
        return auth_mode() == "off" or os.environ.get(STUDIO_ENV, "").strip().lower() == ADMIN
    return ADMIN in (ctx.permissions or [])


def _user(ctx: Auth.types.AuthContext) -> str:
    """The identity of a user token; 403 for anyone else who is not an admin."""
    if is_internal(ctx.user):
        raise _forbid(f"the server's internal identity may not use {ctx.resource}.{ctx.action}")
    if _studio(ctx):
        raise _forbid(f"Studio access is disabled: set {STUDIO_ENV}=admin for local development")
    if USER_PERMISSION not in (ctx.permissions or []):
        raise _forbid(f"{ctx.resource}.{ctx.action} needs a user or admin token")
    return ctx.user.identity


@auth.on
async def admins_only(ctx: Auth.types.AuthContext, value: Any) -> bool:
    """Default: anything not opened below is for admins only."""
    if not is_admin(ctx):
        raise _forbid(f"{ctx.resource}.{ctx.action} is for admin tokens only")
    return True


@auth.on.threads.create
async def own_new_thread(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """A new thread belongs to its creator; an existing id must already be theirs."""
    if is_admin(ctx):
        return None
    identity = _user(ctx)
    if value.get("metadata") is None:
        value["metadata"] = {}
    value["metadata"]["owner"] = identity  # in place: the server keeps this dict
    return {"owner": identity}


async def own_threads(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """Users see and delete only the threads they own."""
    if is_admin(ctx):
        return None
    return {"owner": _user(ctx)}


auth.on.threads.read(own_threads)
auth.on.threads.search(own_threads)
auth.on.threads.delete(own_threads)


@auth.on.threads.update
async def update_own_thread(
    ctx: Auth.types.AuthContext, value: Any
) -> Auth.types.FilterType | None:
    """Users change only their own threads and cannot hand one to someone else."""
    if is_admin(ctx):
        return None
    identity = _user(ctx)
    owner = (value.get("metadata") or {}).get("owner")
    if owner is not None and owner != identity:
        raise _forbid("metadata.owner is set by the server: a thread cannot change hands")
    return {"owner": identity}


@auth.on.threads.create_run
async def own_runs(ctx: Auth.types.AuthContext, value: Any) -> Auth.types.FilterType | None:
    """Users run recommend / chat for themselves on their own threads; the server, propagate."""
    assistant = str(value.get("assistant_id"))
    if is_internal(ctx.user):
        if assistant != _PROPAGATE or value.get("thread_id") is not None:
            raise _forbid("the internal identity starts thread-less propagate runs only")
        return None
    if is_admin(ctx):
        return None
    identity = _user(ctx)
    graph = _USER_ASSISTANTS.get(assistant)
    if graph is None:
        raise _forbid(f"users may run only the default {', '.join(USER_GRAPHS)} assistants")
    try:
        check_run_request(identity, graph, value.setdefault("kwargs", {}), value.get("thread_id"))
    except PermissionError as err:
        raise _forbid(str(err)) from err
    if value.get("metadata") is None:
        value["metadata"] = {}
    value["metadata"]["owner"] = identity  # a thread this run creates is theirs
    return {"owner": identity}


async def default_assistants(
    ctx: Auth.types.AuthContext, value: Any
) -> Auth.types.FilterType | None:
    """Users see the server's default assistants (admins' presets may carry paths and URLs)."""
    if is_admin(ctx):
        return None
    _user(ctx)
    return {"created_by": "system"}


auth.on.assistants.read(default_assistants)
auth.on.assistants.search(default_assistants)


@auth.on.store
async def own_namespace(ctx: Auth.types.AuthContext, value: Any) -> None:
    """A user's store items live under a namespace that starts with their identity."""
    if is_admin(ctx):
        return
    identity = _user(ctx)
    namespace = tuple(value.get("namespace") or ())
    if not namespace and ctx.action in ("search", "list_namespaces"):
        value["namespace"] = (identity,)  # "everything" means everything of theirs
        return
    if not namespace or namespace[0] != identity:
        raise _forbid(f"store namespaces of user {identity!r} start with [{identity!r}]")
