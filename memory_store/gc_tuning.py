"""The cyclic garbage collector of a long-lived process: young collections made rarer.

Python collects its youngest generation every 700 net allocations of container objects and, every
10 of those, the next one; a full collection follows once enough objects were promoted. A serving
process holds a large, long-lived heap (catalogue, graph, memory cache), so each full collection
walks all of it: measured in the scaled deployment's serving processes at concurrency 64, one or
two full collections per 6 s wave, 230 ms each, during which every request of that process waits.
With the youngest generation collected every ``MEMREC_GC_GEN0`` allocations (default 50,000),
objects that die young are freed before they are promoted and the wave saw no full collection
(``bench/throughput.py``: 0.85 of the ideal at c=64 instead of 0.78, 7.5 instead of 9.1 ms of
serving CPU per request). Nothing is frozen or disabled: every cycle is still collected, only
later. ``MEMREC_GC_GEN0=700`` restores Python's default.
"""

from __future__ import annotations

import gc
import threading

from schemas.context import env_count

GEN0_ENV = "MEMREC_GC_GEN0"
DEFAULT_GEN0 = 50_000

_lock = threading.Lock()


def tune() -> tuple[int, int, int]:
    """Set the youngest generation's threshold from ``MEMREC_GC_GEN0``; the thresholds now.

    A value that is not a whole number >= 1 raises ValueError naming the variable. Only the
    youngest generation's threshold changes; the older ones keep theirs.
    """
    gen0 = env_count(GEN0_ENV, DEFAULT_GEN0)
    with _lock:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0, gen1, gen2)
        return gc.get_threshold()
