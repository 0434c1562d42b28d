"""The store manifest: which index steps are complete, with the size and SHA-256 of their files.

``<store>/manifest.json`` is rewritten atomically after every step of ``memrec index`` and after
every later rewrite of a store file (rules, a privacy deletion). It tells a new store from a
damaged one: a file the manifest lists that is missing or changed, or an event log or Chroma
database that a completed step created and that is gone, is reported as :class:`DamagedStore`
(naming the file and the command that repairs it) instead of being silently recreated empty.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from dataio.files import atomic_write_text, file_digest

MANIFEST = "manifest.json"
FORMAT = 1
EVENTS_FILE = "events.sqlite"
CHROMA_FILE = "chroma/chroma.sqlite3"


class DamagedStore(RuntimeError):
    """A store file is missing or damaged; the message names it and the repair command."""

    def __init__(self, path: Path | str, reason: str, repair: str) -> None:
        super().__init__(f"{path}: {reason}. To repair: {repair}")
        self.path = Path(path)
        self.reason = reason
        self.repair = repair


def repair_command(dataset: str, extra: str = "") -> str:
    """The doctor command that repairs a store (quoted for a shell)."""
    quoted = dataset if dataset.replace("-", "").replace("_", "").isalnum() else repr(dataset)
    return f"`memrec doctor --repair --dataset {quoted}{extra}`"


class FileSum(BaseModel):
    """What a step's file should be."""

    size: int = Field(description="bytes")
    sha256: str = Field(description="hex digest of the content")
    mtime_ns: int | None = Field(
        default=None, description="modification time when recorded: a changed one means hashing"
    )


class Step(BaseModel):
    """One completed index step."""

    done_at: float = Field(description="unix time the step completed")
    files: dict[str, FileSum] = Field(default_factory=dict, description="path -> expected file")
    info: dict[str, Any] = Field(default_factory=dict, description="counts, settings")


class Manifest(BaseModel):
    """Everything the store folder should hold."""

    format: int = Field(default=FORMAT, description="manifest format version")
    dataset: str = Field(description="the dataset name or folder")
    fingerprint: str = Field(description="the dataset fingerprint the steps were built from")
    steps: dict[str, Step] = Field(default_factory=dict, description="completed steps by name")

    def done(self, step: str) -> bool:
        """Whether ``step`` completed (its files are not checked here)."""
        return step in self.steps


def read_manifest(directory: Path, dataset: str = "") -> Manifest | None:
    """The store's manifest, None for a store indexed before manifests (or a new folder)."""
    path = directory / MANIFEST
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return Manifest.model_validate(json.loads(raw))
    except (json.JSONDecodeError, ValidationError, UnicodeDecodeError) as err:
        raise DamagedStore(
            path, f"the store manifest is not valid ({str(err)[:120]})", repair_command(dataset)
        ) from err


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically."""
    atomic_write_text(directory / MANIFEST, manifest.model_dump_json(indent=2))


def file_sum(path: Path) -> FileSum:
    """Size and digest of a file as it is now."""
    stat = path.stat()
    return FileSum(size=stat.st_size, sha256=file_digest(path), mtime_ns=stat.st_mtime_ns)


def record_step(
    directory: Path, manifest: Manifest, step: str, files: list[Path] | None = None, **info: Any
) -> None:
    """Mark ``step`` complete with its files' current checksums, and persist the manifest."""
    sums = {str(f.relative_to(directory)): file_sum(f) for f in files or []}
    manifest.steps[step] = Step(done_at=time.time(), files=sums, info=info)
    write_manifest(directory, manifest)


def refresh_files(directory: Path, step: str, files: list[Path]) -> None:
    """After rewriting some of a step's files (rules, a deletion): record their new checksums."""
    manifest = read_manifest(directory)
    if manifest is None or step not in manifest.steps:
        return
    for f in files:
        manifest.steps[step].files[str(f.relative_to(directory))] = file_sum(f)
    write_manifest(directory, manifest)


def file_problem(directory: Path, rel: str, expected: FileSum, *, deep: bool) -> str | None:
    """Why a listed file is not what the manifest says (None when it is)."""
    path = directory / rel
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    if stat.st_size != expected.size:
        return f"size {stat.st_size} bytes, expected {expected.size} (truncated or rewritten)"
    touched = expected.mtime_ns is not None and stat.st_mtime_ns != expected.mtime_ns
    if (deep or touched) and file_digest(path) != expected.sha256:
        return "content changed (checksum mismatch)"
    return None


def step_intact(directory: Path, manifest: Manifest | None, step: str, *, deep: bool) -> bool:
    """Whether ``step`` completed and every one of its files is as recorded."""
    if manifest is None or step not in manifest.steps:
        return False
    files = manifest.steps[step].files
    return all(file_problem(directory, rel, s, deep=deep) is None for rel, s in files.items())


def damaged_files(directory: Path, manifest: Manifest, *, deep: bool) -> list[tuple[str, str, str]]:
    """(step, file, problem) for every listed file that is missing or changed."""
    out = []
    for name, step in manifest.steps.items():
        for rel, expected in step.files.items():
            problem = file_problem(directory, rel, expected, deep=deep)
            if problem is not None:
                out.append((name, rel, problem))
    return out


def check_store_files(directory: Path, dataset: str, *, chroma_embedded: bool) -> None:
    """Raise DamagedStore for the first listed file missing or resized, or a lost database.

    Cheap: sizes, and checksums only of files modified since they were recorded; run on every
    open. ``memrec doctor`` compares every checksum.
    """
    manifest = read_manifest(directory, dataset)
    if manifest is None:
        return
    for step, rel, problem in damaged_files(directory, manifest, deep=False):
        raise DamagedStore(
            directory / rel, f"{problem} (written by the {step} step)", repair_command(dataset)
        )
    in_postgres = bool(os.environ.get("MEMREC_DATABASE_URL"))  # the log lives there
    if manifest.done("events") and not in_postgres and not (directory / EVENTS_FILE).exists():
        raise DamagedStore(
            directory / EVENTS_FILE,
            "the event log is missing (every interaction recorded since indexing was in it); it "
            "is not recreated empty",
            f"restore it from a backup, or accept the loss with "
            f"{repair_command(dataset, ' --new-event-log')}",
        )
    memories = manifest.steps.get("memories")
    if (
        chroma_embedded
        and memories is not None
        and memories.info.get("chroma") == "embedded"
        and not (directory / CHROMA_FILE).exists()
    ):
        raise DamagedStore(
            directory / CHROMA_FILE,
            "the memory database is missing; it is not recreated empty",
            f"{repair_command(dataset)} rebuilds the memories from the catalog and the audit log",
        )
