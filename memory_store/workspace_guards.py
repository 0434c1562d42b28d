"""What keeps a workspace safe to share: one writer, many readers, privacy seen at once.

``Workspace`` (``memory_store/workspace.py``) inherits these: the writer lock taken up front, the
privacy epoch that tells a long-lived process another one deleted or opted out a user (``sync``
before the next read, no restart) and the repair hint its errors name.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dataio.dataset import Dataset
from memory_store.events import EventLog, ReadOnlyLog
from memory_store.forgetting import apply_privacy_state
from memory_store.manifest import repair_command
from memory_store.privacy_epoch import PrivacyEpoch
from memory_store.privacy_log import PrivacyState, read_privacy
from memory_store.writer_lock import WriterLock

log = logging.getLogger(__name__)


class StoreGuards:
    """The writer-lock and privacy-sync part of a workspace."""

    directory: Path
    dataset: Dataset
    events: EventLog
    writer: WriterLock | None
    epoch: PrivacyEpoch
    _seen: tuple[int, tuple[float, ...]] | None

    @property
    def owns_files(self) -> bool:
        """Whether the store files are this workspace's (not a clone reading another's)."""
        return self.events.path.parent == self.directory

    def repair_hint(self) -> str:
        """The command that repairs this store."""
        return repair_command(self.dataset.name)

    # ------------------------------------------------------------------ one writer, many readers
    def acquire_writer(self, wait_s: float | None = None) -> None:
        """Take the store's writer lock now (writer commands do, so a refusal comes first)."""
        if self.events.readonly:
            raise ReadOnlyLog(f"{self.directory} was opened read-only; this command cannot write")
        if self.writer is not None:
            self.writer.acquire(wait_s)

    def privacy_changed(self) -> bool:
        """Whether another process recorded a privacy choice since the last sync (no I/O).

        Without a mapped epoch file (a read-only folder) the answer is always "maybe".
        """
        if self._seen is None or not self.epoch.mapped:
            return True
        return self.epoch.value() != self._seen[0]

    def sync(self) -> bool:
        """Apply privacy choices recorded since the last call, by any process (free when none).

        Every graph node gets its workspace through ``workspace_for`` / ``aworkspace_for``,
        which call this when the store's privacy epoch moved (``privacy_epoch.py``: a memory
        read), so a deletion is seen before the next read without a restart.
        """
        if not self.privacy_changed():
            return False
        epoch = self.epoch.value()
        try:
            mark = self.events.privacy_mark()
        except (OSError, RuntimeError) as err:  # a closed or damaged log: the next read says so
            log.debug("privacy sync skipped: %s", err)
            return False
        changed = self._seen is None or self._seen[1] != mark
        self._seen = (epoch, mark)
        if changed:
            self.apply_privacy(read_privacy(self.events.path))
        return changed

    def apply_privacy(self, state: PrivacyState) -> None:
        """Exclude opted-out and deleted users (the choices ``memory_store/privacy_log`` keeps)."""
        apply_privacy_state(self, state)
