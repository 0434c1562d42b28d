"""Deleting a user so that nothing of theirs is left: memories, log rows, files, caches, Chroma.

Order (each step is idempotent, so a deletion interrupted at any point is finished by running it
again; the tombstone written first already keeps the user out of every read):

1. tombstone (a salted hash and the catalog code, never the id: ``privacy_log.py``), and the
   user leaves this process's curation and recording at once;
2. their queued jobs are dropped and running ones awaited, so nothing writes for them afterwards;
3. every write their interactions caused in other memories is reverted (or its notes cut out), and
   those notes are scrubbed from every audited version of those memories, so ``memory rollback``
   cannot bring them back; the audit rows their interactions caused are deleted;
4. their own memory, its history, their interactions and jobs are deleted; the event log is
   checkpointed so no old page image stays in its WAL (deletes run with ``secure_delete``);
5. Chroma is compacted (log, full-text index and free pages: ``chroma_compact.py``);
6. the catalog snapshot, the split, the candidate and sample files, the graph and the vectors are
   rewritten without them (placeholder id, codes unchanged: ``dataio/redact.py``).

Other processes see the tombstone before their next read (``Workspace.sync``). The LangGraph
server's threads of the user are deleted by ``services/privacy.py`` through the SDK.
"""

from __future__ import annotations

import logging
import time

from pydantic import BaseModel, Field

from dataio.redact import redact_dataset, redact_protocol_files, redact_split
from memory_store.audit import AuditRow
from memory_store.catalog import save_catalog
from memory_store.facet_cache import facet_cache_for
from memory_store.forgetting import forget_codes
from memory_store.graph import InteractionGraph
from memory_store.manifest import read_manifest, refresh_files, write_manifest
from memory_store.memories import MemoryKind
from memory_store.privacy_log import (
    placeholder_id,
    read_privacy,
    record_deletion,
    tombstone_of,
)
from memory_store.summaries import notes_of
from memory_store.workspace import INDEX_MARKER, UnknownEntity, Workspace
from memory_store.writes import apply_write

logger = logging.getLogger(__name__)

DELETE_CAUSE = "delete:{tomb}:{audit_id}"


class DeletionReport(BaseModel):
    """What ``delete_user`` did (it names no user: only the tombstone)."""

    tombstone: str = Field(description="the salted hash the deletion keeps instead of the id")
    reverted: list[str] = Field(default_factory=list, description="refs restored to before")
    notes_removed: list[str] = Field(
        default_factory=list, description="refs whose patch note was cut out (written since)"
    )
    not_reverted: list[str] = Field(
        default_factory=list, description="refs rewritten since; reasons included"
    )
    memory_deleted: bool = Field(default=False, description="the user's own memory was removed")
    interactions_deleted: int = Field(default=0, description="logged interactions removed")
    audit_rows_deleted: int = Field(default=0, description="history rows removed")
    audit_rows_scrubbed: int = Field(default=0, description="other rows whose texts were cut")
    jobs_cancelled: int = Field(default=0, description="queued jobs of the user dropped")
    compacted: dict[str, int] = Field(default_factory=dict, description="Chroma records kept")
    files_rewritten: list[str] = Field(default_factory=list, description="store files rewritten")
    log_checkpointed: bool = Field(default=False, description="the WAL no longer holds old pages")
    train_edges_remaining: int = Field(
        default=0, description="graph edges of the user left after the deletion (0 when complete)"
    )


def resolve_code(ws: Workspace, user_id: str) -> int:
    """The user's catalog code; also for a deletion a crash interrupted (the id is gone)."""
    if ws.has_user(user_id):
        return ws.user_code(user_id)
    code = read_privacy(ws.events.path).codes.get(tombstone_of(user_id))
    if code is None:
        ws.user_code(user_id)  # raises UnknownEntity with a hint
        raise UnknownEntity(f"unknown user id {user_id!r}")
    return code


def delete_user(ws: Workspace, user_id: str, *, wait_s: float = 120.0) -> DeletionReport:
    """Delete a user everywhere in the store (see the module docstring); safe to re-run."""
    code = resolve_code(ws, user_id)
    ws.acquire_writer()
    tomb = tombstone_of(user_id)
    report = DeletionReport(tombstone=tomb)
    record_deletion(ws.events.path, user_id, code)
    with ws.lock:
        ws.deleted.add(user_id)
        ws.opted_out.add(code)
    report.jobs_cancelled = ws.events.cancel_user_jobs(user_id)
    _await_running(ws, user_id, wait_s)
    caused = ws.events.writes_caused_by_user(user_id)
    for row in reversed(caused):
        if not (row.kind == "user" and row.entity_id == user_id):
            _revert(ws, row, tomb, report)
    report.audit_rows_scrubbed = _scrub(ws, caused, user_id)
    if ws.memories.get("user", user_id) is not None:
        ws.memories.delete("user", user_id)
        report.memory_deleted = True
    report.audit_rows_deleted = ws.events.delete_history("user", user_id)
    report.audit_rows_deleted += ws.events.delete_caused_by({row.cause for row in caused})
    report.interactions_deleted = ws.events.delete_user(user_id)
    report.log_checkpointed = ws.events.checkpoint()
    if ws.owns_files:  # a clone (evaluation, tests) reads another store's files: never rewritten
        report.compacted = _compact(ws, caused)
        report.files_rewritten = _rewrite_files(ws, code, user_id)
    with ws.lock:
        if code not in ws.deleted_codes:
            forget_codes(ws, {code})
            ws.deleted_codes.add(code)
        report.train_edges_remaining = len(ws.graph.user_items(code))
    _clear_caches(ws)
    logger.info("deleted user %s: %s", tomb[:23], report.model_dump_json())
    return report


def _await_running(ws: Workspace, user_id: str, wait_s: float) -> None:
    """Let a job of the user that a worker already runs finish (it is reverted afterwards)."""
    deadline = time.monotonic() + wait_s
    while ws.events.running_user_jobs(user_id):
        if time.monotonic() > deadline:
            logger.warning("a job of the deleted user was still running after %.0f s", wait_s)
            return
        time.sleep(0.1)


def _revert(ws: Workspace, row: AuditRow, tomb: str, report: DeletionReport) -> None:
    """Undo one write the user caused: restore the previous text, or cut its notes out."""
    ref = f"{row.kind}:{row.entity_id}"
    kind: MemoryKind = "user" if row.kind == "user" else "item"
    current = ws.memories.get(kind, row.entity_id)
    if current is None:
        return
    cause = DELETE_CAUSE.format(tomb=tomb[7:23], audit_id=row.id)
    previous = row.previous_text or ""
    if current.text == row.new_text and row.previous_text is not None:
        text, bucket = previous, report.reverted
    else:
        added = _added_notes(row)
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
        ws.on_memory_write(kind, row.entity_id, record.text, version=record.version)
        facet_cache_for(ws).invalidate(kind, row.entity_id)
    bucket.append(ref)


def _added_notes(row: AuditRow) -> list[str]:
    return [n for n in notes_of(row.new_text) if n not in notes_of(row.previous_text or "")]


def _scrub(ws: Workspace, caused: list[AuditRow], user_id: str) -> int:
    """Cut the notes the user's writes added out of every audited version of those memories."""
    notes: dict[tuple[str, str], list[str]] = {}
    for row in caused:
        if row.kind == "user" and row.entity_id == user_id:
            continue
        notes.setdefault((row.kind, row.entity_id), []).extend(_added_notes(row))
    return sum(ws.events.scrub_texts(k, e, fragments) for (k, e), fragments in notes.items())


def _compact(ws: Workspace, caused: list[AuditRow]) -> dict[str, int]:
    """Compact the Chroma collections that held the user's texts (embedded or server)."""
    inner = getattr(ws.memories, "inner", ws.memories)
    compact = getattr(inner, "compact", None)
    if not callable(compact):
        return {}
    kinds = ["user"] + (["item"] if any(row.kind == "item" for row in caused) else [])
    result: dict[str, int] = compact(kinds)
    return result


def _rewrite_files(ws: Workspace, code: int, user_id: str) -> list[str]:
    """Rewrite the catalog, split, protocol files, graph and vectors without the user."""
    directory = ws.directory
    old_id = ws.dataset.user_ids[code]
    placeholders = {code: placeholder_id(user_id)}
    dataset = redact_dataset(ws.dataset, placeholders)
    split = redact_split(ws.split, {code})
    written = [save_catalog(directory, dataset, split)]
    written += redact_protocol_files(directory, dataset, {user_id, old_id})
    graph = InteractionGraph.build(
        split.train, dataset.n_users, dataset.n_items, dataset.item_attributes, dataset.has_clock
    )
    graph_files = graph.save(directory / "graph")
    with ws.lock:
        ws.vectors.clear("user", code)
        vector_files = ws.vectors.save(directory)
    refresh_files(directory, "catalog", written[:1])
    refresh_files(directory, "candidates", written[1:])
    refresh_files(directory, "graph", graph_files)
    refresh_files(directory, "vectors", vector_files)
    _refingerprint(ws, dataset)
    return [str(p.relative_to(directory)) for p in [*written, *graph_files, *vector_files]]


def _refingerprint(ws: Workspace, dataset: object) -> None:
    """The marker and manifest name the redacted dataset's fingerprint (re-index reuses it)."""
    import json

    from dataio.files import atomic_write_text
    from dataio.split import dataset_fingerprint

    fingerprint = dataset_fingerprint(dataset)  # type: ignore[arg-type]
    marker = ws.directory / INDEX_MARKER
    data = json.loads(marker.read_text(encoding="utf-8"))
    data["fingerprint"] = fingerprint
    atomic_write_text(marker, json.dumps(data, indent=2))
    manifest = read_manifest(ws.directory, ws.name)
    if manifest is not None:
        manifest.fingerprint = fingerprint
        write_manifest(ws.directory, manifest)


def _clear_caches(ws: Workspace) -> None:
    clear = getattr(ws.memories, "clear", None)
    if callable(clear):
        clear()
    facet_cache_for(ws).clear()
