"""What a running process does when a privacy choice is recorded (by itself or by another process).

``Workspace.sync`` (called whenever a graph node asks for its workspace) notices a new choice with
one cheap query and calls :func:`apply_privacy_state`: a deleted user is removed from the graph,
their vector zeroed, their id replaced in the in-memory catalog (so no API of this process knows
it any more), and every cache that could hold their data is dropped (memory read cache, facets,
candidate lists). Opt-outs are applied as they are now (an opt-in elsewhere is seen too).

The functions take the workspace untyped because ``memory_store/workspace.py`` imports this module.
"""

from __future__ import annotations

import logging
from typing import Any

from dataio.redact import redact_dataset, redact_split
from memory_store.facet_cache import facet_cache_for
from memory_store.privacy_log import PrivacyState, is_placeholder, placeholder_id, tombstone_of

logger = logging.getLogger(__name__)


def deleted_codes(ws: Any, state: PrivacyState) -> set[int]:
    """Catalog codes of the deleted users (tombstones recorded without a code are looked up)."""
    codes = {c for c in state.deleted_codes if 0 <= c < ws.dataset.n_users}
    if len(codes) < len(state.deleted):
        wanted = set(state.deleted)
        for code, user_id in enumerate(ws.dataset.user_ids):
            if tombstone_of(user_id) in wanted or user_id in wanted:
                codes.add(code)
    return codes


def forget_codes(ws: Any, codes: set[int]) -> None:
    """Remove deleted users from this process's in-memory state (the caller holds ws.lock).

    Their graph rows and vectors go; the catalog and split are replaced by redacted copies
    (placeholder ids, no interactions: ``dataio/redact.py``), as the snapshot on disk is.
    """
    placeholders = {}
    for code in sorted(codes):
        ws.graph.remove_user(code)
        ws.vectors.clear("user", code)
        user_id = ws.dataset.user_ids[code]
        placeholders[code] = user_id if is_placeholder(user_id) else placeholder_id(user_id)
    ws.dataset = redact_dataset(ws.dataset, placeholders)
    ws.split = redact_split(ws.split, set(codes))
    ws.benchmark_lists().clear()


def apply_privacy_state(ws: Any, state: PrivacyState) -> int:
    """Bring the workspace in line with the persisted choices; returns how many users it forgot."""
    with ws.lock:
        gone = deleted_codes(ws, state) - ws.deleted_codes
        if gone:
            forget_codes(ws, gone)
        ws.deleted_codes |= gone
        ws.deleted.tombstones |= state.deleted
        index = ws.dataset.user_index
        persisted = {index[u] for u in state.opted_out if u in index}
        opted_in = ws.persisted_opt_outs - persisted  # opted back in since the last sync
        ws.opted_out = (ws.opted_out - opted_in) | persisted | ws.deleted_codes
        ws.persisted_opt_outs = persisted
    if gone:
        clear = getattr(ws.memories, "clear", None)
        if callable(clear):
            clear()  # neighbours' memories were rewritten by the deletion's reverts
        facet_cache_for(ws).clear()
        logger.info("forgot %d deleted user(s) in this process", len(gone))
    return len(gone)
