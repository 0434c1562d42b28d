"""The `memrec` command driven as a user would: a subprocess with a data dir and a store home."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import data_dir, indexed_home, needs_data

# Subprocesses of `memrec` on ml-100k.
pytestmark = pytest.mark.slow

MEMREC = str(Path(sys.executable).parent / "memrec")


def _run(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MEMREC_DATA_DIR": str(data_dir()),
        "MEMREC_HOME": str(home),
        "LANGSMITH_TRACING": "false",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [MEMREC, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A private copy of the indexed ml-100k store (commands here may write to it)."""
    target = tmp_path_factory.mktemp("cli-home")
    shutil.copytree(indexed_home() / "stores", target / "stores")
    return target


@needs_data
def test_index_is_idempotent(tmp_path: Path) -> None:
    first = _run("index", "--dataset", "ml-100k", home=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "built" in first.stdout and "2625 memories created" in first.stdout
    second = _run("index", "--dataset", "ml-100k", home=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "reused" in second.stdout and "0 memories created" in second.stdout


def test_recommend_prints_a_table_with_rationales(home: Path) -> None:
    out = _run("recommend", "--dataset", "ml-100k", "--user", "1", home=home)
    assert out.returncode == 0, out.stderr
    assert "rationale" in out.stdout and "facets:" in out.stdout
    assert out.stdout.count("\n") > 10


def test_recommend_json_with_explicit_candidates(home: Path) -> None:
    out = _run(
        "recommend",
        "--user",
        "1",
        "--candidates",
        "50,181,1",
        "--request",
        "space",
        "--json",
        home=home,
    )
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert sorted(r["item_id"] for r in payload["ranking"]) == ["1", "181", "50"]
    assert all(r["rationale"] for r in payload["ranking"])
    assert set(payload["usage"]) == {"curate", "synthesize", "rank"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("recommend", "--user", "1", "--candidates", "1,1"), "duplicate"),
        (("recommend", "--user", "1", "--candidates", "zzz"), "unknown candidate"),
        (("recommend", "--user", "1", "--roles", "nope"), "unknown preset"),
        (("index", "--dataset", "no-such-dataset"), "no-such-dataset"),
        (("recommend", "--dataset", "amazon-games", "--user", "1"), "memrec index"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(home: Path, args, message) -> None:
    out = _run(*args, home=home)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_download_offline_fails_clearly(tmp_path: Path) -> None:
    out = _run("data", "download", "ml-100k", "--data-dir", str(tmp_path), home=tmp_path)
    # no network here: a clear message naming the source and what to do by hand
    assert out.returncode == 2
    assert "grouplens" in out.stderr.lower() and "Traceback" not in out.stderr


def test_rules_show(home: Path) -> None:
    out = _run("rules", "show", "--dataset", "ml-100k", home=home)
    assert out.returncode == 0, out.stderr
    assert "overlap" in out.stdout and "co_count" in out.stdout


def test_demo_recommends_records_and_shows_the_changed_memory(tmp_path: Path) -> None:
    shutil.copytree(indexed_home() / "stores", tmp_path / "stores")
    out = _run("demo", home=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Recommendations for user 1" in out.stdout
    assert "recorded interaction" in out.stdout
    before = out.stdout.split("user memory before:")[1].split("user memory after:")[0]
    after = out.stdout.split("user memory after:")[1]
    assert before.strip() and after.strip() and before.strip() != after.strip()
