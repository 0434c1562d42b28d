"""The `forget_threads` node: on the LangGraph server, delete a deleted user's threads there.

Runs after ``forget`` in the privacy graph, inside the server process: the user's threads (owned
by them, or whose metadata or state names them) are deleted through the server's own API
(``langgraph_sdk.get_client()`` without a URL is the in-process transport). The in-memory runtime
of ``langgraph dev`` leaves a deleted thread's channel values behind (langchain-ai/langgraph
#8054), so they are purged from its checkpointer too (:func:`purge_inmem_checkpoints`).
Outside a server it does nothing.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from langgraph.runtime import Runtime

from schemas.context import MemRecContext
from schemas.privacy_state import PrivacyState

logger = logging.getLogger(__name__)

_PAGE = 100


def inmem_saver() -> Any:
    """The in-memory runtime's checkpointer when this process is `langgraph dev`, else None."""
    module = sys.modules.get("langgraph_runtime_inmem.checkpoint")
    return getattr(module, "MEMORY", None) if module is not None else None


def _persisted_dicts(saver: Any) -> list[Any]:
    """The runtime's file-backed dicts, also those it no longer uses (see ``sweep``).

    Found through the saver's exit stack, which closes (and so writes out) each of them when the
    server stops, and the periodic flush's registry (which forgets a dict once it was empty).
    """
    module = sys.modules.get("langgraph_runtime_inmem._persistence")
    stores = getattr(module, "_stores", {}) if module is not None else {}
    found = [d for d in (ref() for ref in list(stores.values())) if d is not None]
    for _, callback in getattr(getattr(saver, "stack", None), "_exit_callbacks", ()):
        owner = getattr(callback, "__self__", None)
        if hasattr(owner, "sync") and hasattr(owner, "filename"):
            found.append(owner)
    unique: dict[int, Any] = {id(d): d for d in found}
    return list(unique.values())


def sweep(saver: Any) -> int:
    """Drop the channel values and writes of threads that have no checkpoint; how many went.

    The runtime's thread deletion replaces the saver's ``writes`` by a new dict, so the old,
    file-backed one (still written to disk when the server stops, and reloaded at the next
    start) is swept too.
    """
    live = saver.storage
    tables = [saver.blobs, saver.writes]
    tables += [
        d for d in _persisted_dicts(saver) if d is not live and all(d is not t for t in tables)
    ]
    dropped = 0
    for table in tables:
        for key in [k for k in list(table) if isinstance(k, tuple) and k[0] not in live]:
            table.pop(key, None)
            dropped += 1
    return dropped


def purge_inmem_checkpoints(thread_ids: list[str]) -> int:
    """Delete everything the in-memory runtime keeps of these threads, in memory and on disk."""
    saver = inmem_saver()
    if saver is None:
        return 0
    for thread_id in thread_ids:
        saver.delete_thread(str(thread_id))
    sweep(saver)
    for table in _persisted_dicts(saver):
        table.sync()  # now: the periodic flush skips dicts that became empty
    return len(thread_ids)


def belongs_to(thread: dict[str, Any], user_id: str) -> bool:
    """Whether a thread is the user's: owned by them, or its metadata or state names them."""
    metadata = thread.get("metadata") or {}
    values = thread.get("values") or {}
    return user_id in (metadata.get("owner"), metadata.get("user_id")) or (
        isinstance(values, dict) and values.get("user_id") == user_id
    )


async def threads_of(client: Any, user_id: str) -> set[str]:
    """Ids of the user's threads, by scanning every thread (a rare, operator-run action).

    Server-side filters on thread values fail on some runtimes, so the match is made here.
    """
    found: set[str] = set()
    offset = 0
    while True:
        page = await client.threads.search(limit=_PAGE, offset=offset)
        found.update(str(t["thread_id"]) for t in page if belongs_to(t, user_id))
        if len(page) < _PAGE:
            return found
        offset += _PAGE


async def _delete_threads(user_id: str) -> list[str]:
    from langgraph_sdk import get_client

    client = get_client()
    found = await threads_of(client, user_id)
    for thread_id in sorted(found):
        await client.threads.delete(thread_id)
    return sorted(found)


async def forget_threads(state: PrivacyState, runtime: Runtime[MemRecContext]) -> dict[str, Any]:
    """LangGraph adapter: after a deletion on a server, its threads of the user go too."""
    report = dict(state.get("report") or {})
    if state["action"] != "delete" or "langgraph_api" not in sys.modules:
        return {"report": report}
    deleted = await _delete_threads(state["user_id"])
    purge_inmem_checkpoints(deleted)
    report["server_threads_deleted"] = len(deleted)
    logger.info("deleted %d thread(s) of a deleted user on this server", len(deleted))
    return {"report": report}
