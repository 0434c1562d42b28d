"""The "no lost update with several writer processes" contract, for every deployment.

``assert_no_lost_update(row)`` checks what ``bench/chaos_common.account`` found in a store after
several writer processes ran on it: every recorded interaction had its user memory written exactly
once, nothing was recorded or applied twice, no write was lost or left unaudited, no job is stuck,
and `memrec doctor` finds the store consistent. tests/test_chaos.py runs it on the embedded store
(one writer at a time under the writer lock; the others wait or are refused clearly and retry).
The scaled deployment (Postgres event log, Chroma server: issue 18) plugs in by producing such a
row from its own writer processes and calling the same function.
"""

from __future__ import annotations

from bench.chaos_common import Row


def assert_no_lost_update(row: Row) -> None:
    """Fail with the row when any invariant of the contract does not hold."""
    assert row.recorded > 0, row
    assert row.duplicates == 0, row
    assert row.writes_lost == 0, row
    assert row.stuck_jobs == 0, row
    assert row.propagated_once == row.recorded, row
    assert row.doctor == "consistent", row
