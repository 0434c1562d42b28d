"""The chaos scenarios of bench/chaos.py, small, with their targets asserted (slow lane).

On copies of the tiny test catalogue's store: several `memrec feedback` writer processes (no lost
update, refusals are clear), several long-lived writers (one runs, the others are refused naming
it), every injected fault flagged and repaired, feedback and index on a full tmpfs (root only),
and a user deleted through the running LangGraph server leaving no trace.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import chaos_faults, chaos_privacy, chaos_writers
from bench.chaos_common import copy_home
from tests.support.fixtures import TINY_MOVIES, data_dir, indexed_home
from tests.support.writers_contract import assert_no_lost_update

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return copy_home(indexed_home(TINY_MOVIES), tmp_path / "home")


@pytest.mark.timeout(600)
def test_four_cli_writers_lose_nothing_and_refusals_are_clear(home: Path) -> None:
    row = chaos_writers.cli_writers(TINY_MOVIES, home, seconds=25, loops=4)
    assert not [n for n in row.notes if n.startswith("exit")], row.notes  # only clear refusals
    assert_no_lost_update(row)


@pytest.mark.timeout(300)
def test_a_second_long_lived_writer_is_refused_naming_the_holder(home: Path) -> None:
    row = chaos_writers.long_writers(TINY_MOVIES, home, n=4)
    assert row.refused_clearly == 3, row
    assert row.notes == ["1 kept writing"], row.notes


@pytest.mark.timeout(900)
def test_every_injected_fault_is_flagged_named_and_repaired(tmp_path: Path) -> None:
    base = indexed_home(TINY_MOVIES)
    rows = chaos_faults.damaged_files(TINY_MOVIES, base, tmp_path)
    assert len(rows) == len(chaos_faults.FAULTS)
    for row in rows:
        assert not row["doctor flag"].startswith("MISSED"), row
        named = row["error names file + repair"]
        sqlite_page = row["fault"] in ("event log corrupt", "chroma corrupt")  # doctor reads all
        assert named in ("yes", "-") or (sqlite_page and named == "ran"), row
        assert row["repaired"] == "yes", row


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs (the full disk) needs root")
@pytest.mark.timeout(600)
def test_full_disk_prints_no_success_and_resumes(home: Path) -> None:
    row = chaos_faults.full_disk(TINY_MOVIES, home, data_dir())
    on_full, after, index = row.notes
    assert "printed 'recorded': False" in on_full and "exit 2" in on_full, on_full
    assert "No space left" in on_full or "full" in on_full, on_full
    assert after == "after freeing space: exit 0"
    assert row.recorded == 1 and row.duplicates == 0 and row.doctor == "consistent", row
    assert index.startswith("index on a full disk: exit 2"), index
    assert index.endswith("after freeing space: exit 0, doctor exit 0"), index


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_user_deleted_through_the_server_leaves_no_trace(tmp_path: Path) -> None:
    row = chaos_privacy.deletion(tmp_path)
    assert row.marker_hits == 0, row.notes
    assert not [n for n in row.notes if "still" in n or "exit" in n], row.notes
    assert row.doctor == "consistent", row
