"""A writer process for the no-lost-update test of the scaled deployment (tests/test_scaled.py).

``python -m tests.support.pg_writer <database url> <chroma url> <dataset> <name> <n> <ids>``
appends ``n`` notes to each of the comma-separated item memories, one compare-and-set write per
note (``memory_store/writes.apply_write``, cause ``<name>-<k>``), through a Chroma server and the
event log in Postgres, with the Postgres record locks every writer of that deployment takes.
Prints ``done <name>`` at the end.
"""

from __future__ import annotations

import sys

from memory_store.chroma_store import ChromaMemoryStore
from memory_store.pg_events import PgEventLog, PgRecordLocks
from memory_store.summaries import append_note
from memory_store.writes import apply_write


def main(argv: list[str]) -> int:
    """Write the notes (see the module docstring)."""
    database_url, chroma_url, dataset, name, n, ids = argv
    store = ChromaMemoryStore(url=chroma_url)
    store.record_lock = PgRecordLocks(database_url, dataset)
    log = PgEventLog(database_url, dataset)
    for k in range(int(n)):
        for entity in ids.split(","):
            note = f"seen by {name} round {k}"
            apply_write(
                store,
                log,
                "item",
                entity,
                lambda text, note=note: append_note(text, note),  # type: ignore[misc]
                cause=f"{name}-{k}",
                max_retries=200,
                backoff_s=0.001,
            )
    log.close()
    sys.stdout.write(f"done {name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
