"""Privacy of the collaborative memory: opting out of serving as a neighbour, and deleting a user.

The choices are persisted by ``memory_store/privacy_log.py`` and seen by every process before its
next read (``Workspace.sync``). An opted-out user is never curated as a neighbour and never
patched by another user's propagation.

Deletion (``memory_store/deletion.py``) removes the user's memory, interactions, the writes they
caused and their audit rows, compacts Chroma and rewrites the store files without them. Where it
runs: in this process (``delete_user``) when it can take the store's writer lock, or in the
LangGraph server that holds it (``delete_on_server``: the admin-only ``privacy`` graph). When a
server is configured, the user's threads there are deleted too (``delete_user_threads``).
"""

from __future__ import annotations

import logging
from typing import Any

from memory_store.deletion import DeletionReport, delete_user
from memory_store.privacy_log import PrivacyState, read_privacy
from memory_store.workspace import Workspace
from nodes.forget import run_action, set_opt_out
from nodes.forget_threads import threads_of

logger = logging.getLogger(__name__)

__all__ = [
    "DeletionReport",
    "delete_on_server",
    "delete_user",
    "delete_user_threads",
    "load_privacy",
    "run_action",
    "set_opt_out",
]

PRIVACY_ASSISTANT = "privacy"


def load_privacy(ws: Workspace) -> PrivacyState:
    """Load the persisted choices into ``ws`` again (opening a workspace does it once)."""
    state = read_privacy(ws.events.path)
    ws.apply_privacy(state)
    return state


def _client(url: str, api_key: str | None) -> Any:
    from langgraph_sdk import get_client

    return get_client(url=url, api_key=api_key)


async def delete_on_server(
    url: str,
    user_id: str,
    context: dict[str, Any],
    *,
    action: str = "delete",
    api_key: str | None = None,
) -> dict[str, Any]:
    """Run a privacy action in the LangGraph server at ``url`` (the ``privacy`` graph)."""
    client = _client(url, api_key)
    out = await client.runs.wait(
        None,
        PRIVACY_ASSISTANT,
        input={"user_id": user_id, "action": action},
        context=context,
        raise_error=True,
    )
    report = out.get("report") if isinstance(out, dict) else None
    if not isinstance(report, dict):
        raise RuntimeError(f"the privacy run on {url} returned no report: {str(out)[:200]}")
    return report


async def delete_user_threads(url: str, user_id: str, *, api_key: str | None = None) -> int:
    """Delete the server's threads of a user (owned by them, or whose state names them)."""
    client = _client(url, api_key)
    found = await threads_of(client, user_id)
    for thread_id in sorted(found):
        await client.threads.delete(thread_id)
    logger.info("deleted %d server thread(s) of a deleted user", len(found))
    return len(found)
