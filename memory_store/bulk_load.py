"""The first memories of an index: each text embedded once, the store's add beside the build.

The index build has every memory text in hand (the item texts, the offline user summaries). Its
embeddings serve twice, as the store's vectors and as the vectors file curation reads
(``memory_store/vectors.py``), so they are computed once here when the store embeds with the
same local hashing. The store's add then runs while the build writes its candidate files and
rules and tunes its ranker:

- an embedded Chroma store is loaded by a child process (:class:`ChildLoad`, this module run as
  ``python -m memory_store.bulk_load``): Chroma's native add holds the GIL for its whole call, so
  on a thread it only takes turns with the build (amazon-games: the candidate files took 26 s
  beside it instead of 8). The child holds the store's writer lock with its parent (it is given
  the locked descriptor) and is killed when its parent dies, so a killed build never leaves a
  loader writing into the store the next build opens;
- any other store (a Chroma server, an in-memory store) is loaded on a thread
  (:class:`BackgroundLoad`).

The embedding itself (Python and numpy) runs before either starts.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from memory_store.embeddings import HashingEmbedding
from memory_store.inmemory_store import InMemoryMemoryStore
from memory_store.memories import MemoryKind, MemoryRecord, MemoryStore

logger = logging.getLogger(__name__)

CHUNK = 4096
Progress = Callable[[str, int, int], None]  # (step, done, total)


def shared_hashing(store: MemoryStore, mine: HashingEmbedding) -> bool:
    """Whether the store embeds exactly as the vectors file does (one embedding serves both)."""
    function = getattr(store, "embedding_function", None)
    return isinstance(function, HashingEmbedding) and function.get_config() == mine.get_config()


@dataclass
class BackgroundLoad:
    """Embeds and adds the memories of several kinds on a thread; ``join`` for the outcome."""

    store: MemoryStore
    work: list[tuple[MemoryKind, list[tuple[str, str]]]]  # kind -> (id, text) in vector order
    embedding: HashingEmbedding = field(default_factory=HashingEmbedding)
    progress: Progress | None = None
    source: str = "warmup"
    created: int = 0
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    _error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> BackgroundLoad:
        """Embed every text here, then add them on a thread; returns self."""
        self._embed()
        self._thread = threading.Thread(target=self._run, name="memrec-bulk-load", daemon=True)
        self._thread.start()
        return self

    def _embed(self) -> None:
        """Each kind's texts embedded once (the store's vectors and the vectors file)."""
        for kind, pairs in self.work:
            texts = [text for _, text in pairs]
            self.vectors[kind] = (
                self.embedding.embed_texts(texts)
                if texts
                else np.zeros((0, self.embedding.dim), np.float32)
            )

    def join(self) -> int:
        """Wait for the load; how many memories were created (its error, raised here)."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self.created

    def abort(self) -> None:
        """The build failed elsewhere: a thread cannot be stopped, it finishes on its own."""

    def memories(self) -> InMemoryMemoryStore:
        """The memories this load writes, as the store will hold them, in a plain in-memory store.

        What the build reads them from while the load still runs (the ranker's tuning): version
        1 of each id's first text, as ``bulk_init`` writes into an empty store.
        """
        now = time.time()
        copy = InMemoryMemoryStore()
        for kind, pairs in self.work:
            first: dict[str, str] = {}
            for entity_id, text in pairs:
                first.setdefault(entity_id, text)
            copy.restore(
                [
                    MemoryRecord(
                        kind=kind,
                        entity_id=entity_id,
                        text=text,
                        version=1,
                        updated_at=now,
                        source=self.source,
                    )
                    for entity_id, text in first.items()
                ]
            )
        return copy

    def _run(self) -> None:
        try:
            self._load()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread by join
            self._error = err

    def _load(self) -> None:
        reuse = shared_hashing(self.store, self.embedding)
        total = sum(len(pairs) for _, pairs in self.work)
        done = 0
        for kind, pairs in self.work:
            vectors = self.vectors[kind]
            for start in range(0, len(pairs), CHUNK):
                chunk = pairs[start : start + CHUNK]
                rows = vectors[start : start + CHUNK] if reuse else None
                self.created += self.store.bulk_init(kind, chunk, self.source, vectors=rows)
                done += len(chunk)
                if self.progress is not None:
                    self.progress("memories", done, total)
        logger.info("loaded %d memories (%d new), embedded once", total, self.created)


@dataclass
class ChildLoad(BackgroundLoad):
    """The same load into an embedded Chroma store (``path``), added by a child process.

    The child opens ``path`` itself (``store`` is not used), so the caller closes its own client
    on that folder before ``start``. ``keep_fds``: descriptors the child inherits (the store's
    writer lock, so the lock stays held until both processes are gone).
    """

    path: Path | None = None
    keep_fds: Sequence[int] = ()
    peak_rss_mb: float | None = None  # the child's own peak (VmHWM), once it has finished
    _proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildLoad:
        """Embed every text here, then start the child and feed it on a thread; returns self."""
        if self.path is None:
            raise ValueError("ChildLoad needs the Chroma folder (path)")
        self._embed()
        self._proc = subprocess.Popen(  # from this thread: the child's parent-death signal
            [sys.executable, "-m", "memory_store.bulk_load", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=tuple(self.keep_fds),
        )
        payload = {
            "path": str(self.path),
            "embedding": self.embedding.get_config(),
            "source": self.source,
            "work": [(kind, pairs, self.vectors[kind]) for kind, pairs in self.work],
        }
        self._thread = threading.Thread(
            target=self._talk, args=(payload,), name="memrec-bulk-load", daemon=True
        )
        self._thread.start()
        return self

    def abort(self) -> None:
        """Kill the child (the build failed elsewhere) and wait for it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._thread is not None:
            self._thread.join()

    def _talk(self, payload: dict[str, Any]) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        total = sum(len(pairs) for _, pairs in self.work)
        failure: str | None = None
        try:
            try:
                with proc.stdin:
                    pickle.dump(payload, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            except BrokenPipeError:  # the child died early: its exit status says how
                pass
            for line in proc.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # not one of ours
                if "done" in message and self.progress is not None:
                    self.progress("memories", int(message["done"]), total)
                if "created" in message:
                    self.created = int(message["created"])
                    self.peak_rss_mb = message.get("peak_rss_mb")
                if "error" in message:
                    failure = str(message["error"])
            status = proc.wait()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread by join
            self._error = err
            return
        if failure is not None or status != 0:
            self._error = _child_error(self.path, failure, status)
        else:
            logger.info("loaded %d memories (%d new) in a child process", total, self.created)


def _child_error(path: Path | None, failure: str | None, status: int) -> BaseException:
    """The error a failed child stands for: DiskFull when it ran out of space."""
    from dataio.files import DiskFull

    what = failure.strip().splitlines()[-1] if failure else f"exit status {status}"
    if failure is not None and ("No space left" in failure or "disk is full" in failure):
        return DiskFull(Path(path or "."), what)
    return RuntimeError(f"loading the memories into {path} failed: {what}")


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _say(out: IO[str], **message: Any) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def child_main(argv: Sequence[str]) -> int:
    """The child's side: read the work from stdin, add it, report on stdout (JSON lines)."""
    parent = int(argv[0])
    _die_with_parent(parent)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write into the report channel
    try:
        payload = pickle.load(sys.stdin.buffer)
        from memory_store.chroma_store import ChromaMemoryStore

        embedding = HashingEmbedding.build_from_config(payload["embedding"])
        store = ChromaMemoryStore(path=Path(payload["path"]), embedding=embedding)
        created = done = 0
        try:
            for kind, pairs, vectors in payload["work"]:
                for start in range(0, len(pairs), CHUNK):
                    chunk = pairs[start : start + CHUNK]
                    rows = vectors[start : start + CHUNK]
                    created += store.bulk_init(kind, chunk, payload["source"], vectors=rows)
                    done += len(chunk)
                    _say(out, done=done)
                    if os.getppid() != parent:  # where the parent-death signal is not there
                        return 1
        finally:
            store.close()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        _say(out, error=traceback.format_exc())
        return 1
    _say(out, created=created, peak_rss_mb=_peak_rss_mb())
    return 0


def peak_rss_kb() -> int:
    """Peak RSS of this process in KiB: ``VmHWM`` where /proc has it, else ``ru_maxrss``.

    Linux keeps ``ru_maxrss`` across ``execve``, so a child started from a large parent would
    report the parent's size; ``VmHWM`` belongs to the address space the exec created.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss_mb() -> float:
    return round(peak_rss_kb() / 1024, 1)


if __name__ == "__main__":
    raise SystemExit(child_main(sys.argv[1:]))
