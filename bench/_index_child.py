"""Build one index in this process and report its time and own peak RSS as JSON on stdout.

``python -m bench._index_child <dataset or folder> <home> <data_dir>``; the index bench runs one
child per build so each peak RSS belongs to that build alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from memory_store.bulk_load import peak_rss_kb


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its waited-for children.

    All threads count (Chroma's native ones too), and so does a first build's memory-loading
    process.
    """
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main(argv: list[str]) -> int:
    """Index ``argv[0]`` under home ``argv[1]`` with data dir ``argv[2]``."""
    dataset, home, data_dir = argv
    started = time.perf_counter()
    from services.index import build_index  # imports are part of a cold build

    imported = time.perf_counter()
    cpu = _cpu_s()
    report = build_index(dataset, data_dir=data_dir, home=home)
    done = time.perf_counter()
    cpu = _cpu_s() - cpu
    peak_kb = peak_rss_kb()
    from pathlib import Path

    from memory_store.catalog import load_catalog

    dataset_snapshot, _ = load_catalog(Path(report.directory))  # after the peak was read
    payload = {
        "interactions": len(dataset_snapshot.interactions),
        "report": report.model_dump(),
        "import_s": round(imported - started, 2),
        "build_s": round(done - imported, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "loader_peak_rss_mb": report.loader_peak_rss_mb,  # its memory-loading child, if any
    }
    sys.stdout.write(json.dumps(payload) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
