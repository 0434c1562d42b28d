"""Memory growth tracing for a server process (``bench chaos`` soak, investigation only).

Put this folder on ``PYTHONPATH`` and set ``MEMREC_MEMTRACE_DIR``: the interpreter starts
``tracemalloc`` after ``MEMREC_MEMTRACE_WARMUP_S`` seconds (tracing start-up would slow it
several-fold) and a daemon thread writes, every ``MEMREC_MEMTRACE_EVERY_S`` seconds, the
allocations that grew most since its first snapshot to ``<dir>/growth-<n>.txt``, grouped by the
lines that allocated them (4 frames). ``MEMREC_GC_LOG=<file>`` (alone or with the above) appends
one line per full collection: when, how many objects it freed, how long it took.
"""

import gc
import os
import threading
import time
import tracemalloc

_DIR = os.environ.get("MEMREC_MEMTRACE_DIR")


def _loop(directory: str, warmup_s: float, every_s: float) -> None:
    time.sleep(warmup_s)
    tracemalloc.start(4)  # only allocations made after the warm-up are traced
    time.sleep(every_s)
    base = tracemalloc.take_snapshot()
    n = 0
    while True:
        time.sleep(every_s)
        n += 1
        snap = tracemalloc.take_snapshot()
        stats = snap.compare_to(base, "traceback")
        lines = [f"traced now {tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB"]
        for stat in stats[:25]:
            lines.append(f"{stat.size_diff / 1e6:+.2f} MB {stat.count_diff:+d} blocks")
            lines.extend(f"    {frame}" for frame in stat.traceback.format()[-6:])
        with open(os.path.join(directory, f"growth-{n}.txt"), "w") as fh:
            fh.write("\n".join(lines) + "\n")


_GC_LOG = os.environ.get("MEMREC_GC_LOG")  # a file: one line per full (generation 2) collection
_gc_started: dict[str, float] = {}


def _log_gc(phase: str, info: dict) -> None:
    if info.get("generation") != 2 or not _GC_LOG:
        return
    if phase == "start":
        _gc_started["t"] = time.monotonic()
        return
    took = time.monotonic() - _gc_started.get("t", time.monotonic())
    with open(_GC_LOG, "a") as fh:
        freed = info.get("collected")
        fh.write(f"{os.getpid()} {time.time():.1f} collected={freed} took_ms={took * 1e3:.1f}\n")


if _GC_LOG:
    gc.callbacks.append(_log_gc)

if _DIR:
    os.makedirs(_DIR, exist_ok=True)
    threading.Thread(
        target=_loop,
        args=(
            _DIR,
            float(os.environ.get("MEMREC_MEMTRACE_WARMUP_S", "60")),
            float(os.environ.get("MEMREC_MEMTRACE_EVERY_S", "60")),
        ),
        daemon=True,
        name="memrec-memtrace",
    ).start()
