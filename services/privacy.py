"""Privacy of the collaborative memory: opting out of serving as a neighbour, and deleting a user.

The choices are persisted by ``memory_store/privacy_log.py`` and loaded into
``Workspace.opted_out`` when the workspace opens. An opted-out user is never curated as a
neighbour and never patched by another user's propagation (curation and ``load_context`` read
``ws.opted_out``).

``delete_user`` is crash-safe and idempotent: it writes the tombstone first, then reverts the
patches the user's interactions caused in other memories (each revert is an ``apply_write`` with
its own cause, so a re-run skips what is done), then removes the user's memory, its audit history
and the user's interactions and jobs from the event log. Train-time edges of the graph cannot be
removed (``InteractionGraph`` has no removal); a deleted user stays excluded from curation and
patching, and the report says how many train-time edges remain.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field

from memory_store.events import AuditRow
from memory_store.facet_cache import facet_cache_for
from memory_store.memories import MemoryKind
from memory_store.privacy_log import PrivacyState, read_privacy, record_choice
from memory_store.summaries import notes_of
from memory_store.workspace import Workspace
from memory_store.writes import apply_write

logger = logging.getLogger(__name__)

DELETE_CAUSE = "delete:{user}:{audit_id}"


class DeletionReport(BaseModel):
    """What ``delete_user`` did."""

    user_id: str = Field(description="the deleted user")
    reverted: list[str] = Field(default_factory=list, description="refs restored to before")
    notes_removed: list[str] = Field(
        default_factory=list, description="refs whose patch note was cut out (written since)"
    )
    not_reverted: list[str] = Field(
        default_factory=list, description="refs rewritten since; reasons included"
    )
    memory_deleted: bool = Field(default=False, description="the user's own memory was removed")
    interactions_deleted: int = Field(default=0, description="logged interactions removed")
    audit_rows_deleted: int = Field(default=0, description="history rows of the user's own memory")
    train_edges_remaining: int = Field(
        default=0,
        description="graph edges of the user left after the deletion (0 when complete)",
    )


def load_privacy(ws: Workspace) -> PrivacyState:
    """Load the persisted choices into ``ws`` again (opening a workspace does it once)."""
    state = read_privacy(ws.events.path)
    ws.apply_privacy(state)
    return state


def set_opt_out(ws: Workspace, user_id: str, opted_out: bool = True) -> None:
    """Opt a user out of (or back into) serving as a neighbour; persisted and effective now.

    Raises UnknownEntity for a user the dataset does not have. A deleted user stays excluded.
    """
    code = ws.user_code(user_id)
    record_choice(ws.events.path, user_id, opted_out=opted_out)
    with ws.lock:
        if opted_out:
            ws.opted_out.add(code)
        elif user_id not in read_privacy(ws.events.path).deleted:
            ws.opted_out.discard(code)


def delete_user(ws: Workspace, user_id: str) -> DeletionReport:
    """Delete a user: their memory, their logged interactions and the patches they caused.

    Safe to re-run after a crash at any point (see the module docstring).
    """
    code = ws.user_code(user_id)
    record_choice(ws.events.path, user_id, opted_out=True, deleted=True)
    with ws.lock:
        ws.opted_out.add(code)
        ws.deleted.add(user_id)
    report = DeletionReport(user_id=user_id)
    for row in reversed(ws.events.writes_caused_by_user(user_id)):
        if row.kind == "user" and row.entity_id == user_id:
            continue  # the user's own memory goes entirely
        _revert(ws, row, user_id, report)
    if ws.memories.get("user", user_id) is not None:
        ws.memories.delete("user", user_id)
        report.memory_deleted = True
    ws.vectors.users[code] = 0.0
    facet_cache_for(ws).invalidate("user", user_id)
    report.audit_rows_deleted = ws.events.delete_history("user", user_id)
    report.interactions_deleted = ws.events.delete_user(user_id)
    with ws.lock:
        ws.graph.remove_user(code)
    report.train_edges_remaining = _train_edges(ws, code)
    logger.info("deleted user %s: %s", user_id, report.model_dump_json())
    return report


def _revert(ws: Workspace, row: AuditRow, user_id: str, report: DeletionReport) -> None:
    """Undo one write the user caused: restore the previous text, or cut its notes out."""
    ref = f"{row.kind}:{row.entity_id}"
    kind: MemoryKind = "user" if row.kind == "user" else "item"
    current = ws.memories.get(kind, row.entity_id)
    if current is None:
        return
    cause = DELETE_CAUSE.format(user=user_id, audit_id=row.id)
    previous = row.previous_text or ""
    if current.text == row.new_text and row.previous_text is not None:
        text, bucket = previous, report.reverted
    else:
        added = [n for n in notes_of(row.new_text) if n not in notes_of(previous)]
        head_changed = row.new_text.split(" Note: ")[0] != previous.split(" Note: ")[0]
        if head_changed:
            report.not_reverted.append(f"{ref}: rewritten by this user and written since")
        if not added:
            return
        text = current.text
        for note in added:
            text = text.replace(f" {note}", "")
        if text == current.text:
            return
        bucket = report.notes_removed
    record = apply_write(ws.memories, ws.events, kind, row.entity_id, text, cause=cause)
    if record is not None:
        ws.on_memory_write(kind, row.entity_id, record.text)
        facet_cache_for(ws).invalidate(kind, row.entity_id)
    bucket.append(ref)


def _train_edges(ws: Workspace, code: int) -> int:
    """Edges of the user still in the graph (train time plus this process's appends)."""
    with ws.lock:
        return len(ws.graph.user_items(code))
