"""The audit table of the event log: every memory write, its previous text, cause and version.

Auditing every write makes writes idempotent per cause (``applied``) and lets any past version be
restored (``version_text``, ``memory_store/writes.rollback``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from memory_store.event_db import EventDb

# (kind, entity_id, version, previous_text, new_text, cause, at)
AuditValues = tuple[str, str, int, str | None, str, str, float]
_AUDIT_COLUMNS = "a.id, a.kind, a.entity_id, a.version, a.previous_text, a.new_text, a.cause, a.at"


_FILL_PREVIOUS = (  # a row audited for a write still in flight (exactly-once repair) gets its
    # writer's previous text when the writer audits it (never a retention-pruned row)
    "UPDATE audit SET previous_text=? WHERE kind=? AND entity_id=? AND version=? AND cause=?"
    " AND previous_text IS NULL AND new_text != ''"
)


class AuditRow(BaseModel):
    """One audited memory write."""

    id: int = Field(description="insertion order")
    kind: str = Field(description="user or item")
    entity_id: str = Field(description="the user / item id")
    version: int = Field(description="the version this write created")
    previous_text: str | None = Field(description="text before the write (None when unknown)")
    new_text: str = Field(description="text written")
    cause: str = Field(description="interaction id, warmup, rollback:<v>, delete:<user>")
    at: float = Field(description="unix time of the write")


class AuditLog(EventDb):
    """The audit operations of :class:`EventLog`."""

    def audit_write(
        self,
        kind: str,
        entity_id: str,
        version: int,
        previous_text: str | None,
        new_text: str,
        cause: str,
        at: float | None = None,
    ) -> bool:
        """Record one memory write; a replay of the same (kind, entity, version) is ignored.

        Returns True when the row was inserted, False when that version was already audited.
        """
        with self._tx() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO audit(kind, entity_id, version, previous_text, new_text,"
                " cause, at) VALUES (?,?,?,?,?,?,?)",
                (
                    kind,
                    entity_id,
                    version,
                    previous_text,
                    new_text,
                    cause,
                    self._clock() if at is None else at,
                ),
            ).rowcount
            if not inserted and previous_text is not None:
                conn.execute(_FILL_PREVIOUS, (previous_text, kind, entity_id, version, cause))
        return bool(inserted)

    def audit_writes(self, rows: Sequence[AuditValues]) -> None:
        """Record many writes in one transaction: (kind, entity, version, previous, new, cause, at).

        A row whose (kind, entity, version) is audited already is ignored, as in ``audit_write``.
        """
        if not rows:
            return
        with self._tx() as conn:
            for row in rows:
                inserted = conn.execute(
                    "INSERT OR IGNORE INTO audit(kind, entity_id, version, previous_text, new_text,"
                    " cause, at) VALUES (?,?,?,?,?,?,?)",
                    row,
                ).rowcount
                if not inserted and row[3] is not None:
                    conn.execute(_FILL_PREVIOUS, (row[3], row[0], row[1], row[2], row[5]))

    def applied_records(self, cause: str) -> set[tuple[str, str]]:
        """The (kind, entity) memories ``cause`` has written already."""
        rows = self._read("SELECT DISTINCT kind, entity_id FROM audit WHERE cause=?", (cause,))
        return {(r["kind"], r["entity_id"]) for r in rows}

    def history(self, kind: str, entity_id: str) -> list[AuditRow]:
        """Every audited write of one memory, oldest version first."""
        return self._audit("WHERE a.kind=? AND a.entity_id=? ORDER BY a.version", (kind, entity_id))

    def version_text(self, kind: str, entity_id: str, version: int) -> str | None:
        """The text a memory had at ``version``, or None when that version was never audited."""
        rows = self._read(
            "SELECT new_text FROM audit WHERE kind=? AND entity_id=? AND version=?"
            " AND NOT (previous_text IS NULL AND new_text='')",  # pruned by retention
            (kind, entity_id, version),
        )
        return rows[0]["new_text"] if rows else None

    def audited_versions(self, kind: str, versions: Mapping[str, int]) -> set[str]:
        """The entities of ``versions`` (entity -> version) whose given version is audited."""
        items = list(versions.items())
        found: set[str] = set()
        for start in range(0, len(items), 200):
            chunk = items[start : start + 200]
            match = " OR ".join(["(entity_id=? AND version=?)"] * len(chunk))
            params: list[object] = [kind]
            for entity_id, version in chunk:
                params += [entity_id, version]
            rows = self._read(
                f"SELECT entity_id FROM audit WHERE kind=? AND ({match})", tuple(params)
            )
            found.update(r["entity_id"] for r in rows)
        return found

    def applied(self, cause: str, kind: str, entity_id: str) -> bool:
        """Whether ``cause`` has already written this memory."""
        return bool(
            self._read(
                "SELECT 1 FROM audit WHERE cause=? AND kind=? AND entity_id=? LIMIT 1",
                (cause, kind, entity_id),
            )
        )

    def writes_caused_by(self, cause: str) -> list[AuditRow]:
        """Every write made by one cause, in write order."""
        return self._audit("WHERE a.cause=? ORDER BY a.id", (cause,))

    def writes_caused_by_user(self, user_id: str) -> list[AuditRow]:
        """Every write caused by one of the user's (still recorded) interactions, in write order."""
        return self._audit(
            "JOIN interactions i ON i.interaction_id=a.cause WHERE i.user_id=? ORDER BY a.id",
            (user_id,),
        )

    def _audit(self, where: str, params: tuple[object, ...]) -> list[AuditRow]:
        rows = self._read(f"SELECT {_AUDIT_COLUMNS} FROM audit a {where}", params)
        return [AuditRow(**dict(r)) for r in rows]

    def latest_versions(self) -> list[AuditRow]:
        """The latest audited write of every memory (what recovery restores)."""
        return self._audit(
            "JOIN (SELECT kind AS k, entity_id AS e, MAX(version) AS v FROM audit "
            "GROUP BY kind, entity_id) m ON a.kind=m.k AND a.entity_id=m.e AND a.version=m.v "
            "ORDER BY a.id",
            (),
        )

    def prune_texts(self, keep_versions: int, before: float, limit: int = 5000) -> int:
        """Empty the texts of old rows beyond the retention policy; returns how many.

        A row is pruned when it is older than ``before`` and not among its memory's last
        ``keep_versions`` versions; at most ``limit`` rows per call.
        """
        with self._tx() as conn:
            return conn.execute(
                "UPDATE audit SET previous_text=NULL, new_text='' WHERE id IN ("
                " SELECT a.id FROM audit a WHERE a.at < ? AND NOT (a.previous_text IS NULL"
                " AND a.new_text='') AND a.version <= (SELECT MAX(b.version) FROM audit b"
                " WHERE b.kind=a.kind AND b.entity_id=a.entity_id) - ? LIMIT ?)",
                (before, keep_versions, limit),
            ).rowcount

    def vacuum(self) -> None:
        """Rewrite the file without free pages (after retention; needs no other writer)."""
        with self._lock, self._errors():
            self._conn.execute("VACUUM")

    def delete_caused_by(self, causes: set[str]) -> int:
        """Remove the audit rows written by ``causes`` (a deleted user's interactions)."""
        with self._tx() as conn:
            return sum(
                conn.execute("DELETE FROM audit WHERE cause=?", (cause,)).rowcount
                for cause in sorted(causes)
            )

    def scrub_texts(self, kind: str, entity_id: str, fragments: list[str]) -> int:
        """Cut ``fragments`` out of every audited text of one memory; returns rows changed.

        A deletion uses it so that no version of a memory can bring a deleted user's notes back
        (``memory rollback`` restores audited texts).
        """
        changed = 0
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT id, previous_text, new_text FROM audit WHERE kind=? AND entity_id=?",
                (kind, entity_id),
            ).fetchall()
            for row in rows:
                previous, new = row["previous_text"], row["new_text"]
                for fragment in fragments:
                    previous = _cut(previous, fragment)
                    new = _cut(new, fragment)
                if (previous, new) != (row["previous_text"], row["new_text"]):
                    conn.execute(
                        "UPDATE audit SET previous_text=?, new_text=? WHERE id=?",
                        (previous, new, row["id"]),
                    )
                    changed += 1
        return changed

    def delete_history(self, kind: str, entity_id: str) -> int:
        """Remove every audit row of one memory (it held that memory's text); returns how many."""
        with self._tx() as conn:
            return conn.execute(
                "DELETE FROM audit WHERE kind=? AND entity_id=?", (kind, entity_id)
            ).rowcount


def _cut(text: str | None, fragment: str) -> str | None:
    if text is None or not fragment:
        return text
    return text.replace(f" {fragment}", "").replace(fragment, "")
