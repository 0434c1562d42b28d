"""The evaluation harness cannot leak and runs on any folder (issue 17), on the tiny catalogue.

Evaluation copies start from the index, never from the live store; the leak check covers the event
log, memories, vectors and the facet cache; the demo and the Studio seed never record a held-out
target; concurrent evaluations index once; a generic-format folder evaluates end to end.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evaluation import runner, warmup
from evaluation.leakage import LeakageError, check_no_leak
from evaluation.methods import METHOD_GROUPS, expand_methods
from memory_store.facet_cache import facet_cache_for
from memory_store.index_copy import index_copy
from memory_store.workspace import INDEX_MARKER
from memory_store.writes import apply_write
from nodes.record import record_interaction
from schemas.records import Facet
from studio.seed import demo_items
from tests.support.fixtures import TINY_MOVIES, copy_store, workspace_fixtures

ws, ctx = workspace_fixtures(TINY_MOVIES)


def _held_out(ws, which: str) -> dict[int, int]:  # noqa: F811
    frame = ws.split.valid if which == "valid" else ws.split.test
    return dict(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


def _target(ws, user: int) -> tuple[str, str]:  # noqa: F811
    """(user id, test target item id) of a user whose target is not in their history."""
    return ws.dataset.user_ids[user], ws.dataset.item_ids[_held_out(ws, "test")[user]]


def _evaluated(ws) -> list[int]:  # noqa: F811
    return sorted(ws.split.test["user"].tolist())


def test_an_evaluation_copy_never_sees_the_live_store(ws, tmp_path: Path) -> None:  # noqa: F811
    user = _evaluated(ws)[0]
    user_id, item_id = _target(ws, user)
    initial = ws.memory_text("user", user_id)
    planted = f"{initial} Loved item:{item_id} ({ws.title(ws.item_code(item_id))})."
    apply_write(ws.memories, ws.events, "user", user_id, planted, cause="live-demo")
    ws.on_memory_write("user", user_id, planted)
    record_interaction(ws, user_id, item_id, "positive")  # a live feedback on the test target
    facet = Facet(name="x", description="", confidence=1.0, evidence=[f"item:{item_id}"])
    facet_cache_for(ws).put(("k",), [facet], (f"user:{user_id}",))

    copy = index_copy(ws, tmp_path / "copy")
    assert copy.memory_text("user", user_id) == initial  # the text indexing wrote
    assert not copy.graph.has(user, ws.item_code(item_id))
    assert copy.events.interactions() == [] and facet_cache_for(copy).snapshot() == []
    assert np.allclose(copy.vectors.users[user], copy.vectors.embedding.embed_texts([initial])[0])
    check_no_leak(copy, copy.split, _evaluated(ws))  # passes: nothing of the plant is there
    copy.events.close()


@pytest.mark.parametrize("plant", ["event", "write", "initial", "vector", "facet"])
def test_the_leak_check_catches_a_target_planted_in_the_copy(
    ws,  # noqa: F811
    tmp_path: Path,
    plant: str,
) -> None:
    copy = index_copy(ws, tmp_path / "copy")
    users = _evaluated(ws)
    user = users[1]
    user_id, item_id = _target(copy, user)
    text = copy.memory_text("user", user_id)
    if plant == "event":
        record_interaction(copy, user_id, item_id, "positive")
        message = "not warm-up"
    elif plant == "write":
        copy.memories.put("user", user_id, text + " More.", expected_version=1, source="cli")
        message = "neither by indexing nor by a warm-up"
    elif plant == "initial":  # as if the index itself had been written with the target
        record = copy.memories.get("user", user_id)
        assert record is not None
        copy.memories.restore([record.model_copy(update={"text": f"{text} item:{item_id}."})])
        copy.on_memory_write("user", user_id, f"{text} item:{item_id}.")
        message = "names their test target"
    elif plant == "vector":
        copy.vectors.users[user] = copy.vectors.embedding.embed_texts([f"item:{item_id}"])[0]
        message = "not the embedding of their memory"
    else:
        facet = Facet(name="x", description="", confidence=1.0, evidence=[f"item:{item_id}"])
        facet_cache_for(copy).put(("k",), [facet], (f"user:{user_id}", "user:other"))
        message = "cached facet"
    with pytest.raises(LeakageError, match=message):
        check_no_leak(copy, copy.split, users)
    copy.events.close()


def test_a_neighbours_warm_up_choice_may_be_named(ws, tmp_path: Path) -> None:  # noqa: F811
    """ "Users like you chose item:X" is legitimate when X is someone's validation item."""
    copy = index_copy(ws, tmp_path / "copy")
    valid = _held_out(copy, "valid")
    users = _evaluated(copy)
    first, second = users[0], users[1]
    item_id = copy.dataset.item_ids[valid[second]]
    record_interaction(copy, copy.dataset.user_ids[second], item_id, "positive")
    user_id = copy.dataset.user_ids[first]
    text = f"{copy.memory_text('user', user_id)} Users like you recently chose item:{item_id}."
    record = copy.memories.get("user", user_id)
    assert record is not None
    cause = copy.events.interactions()[0].interaction_id
    copy.memories.restore([record.model_copy(update={"text": text, "version": 2, "source": cause})])
    copy.on_memory_write("user", user_id, text)
    check_no_leak(copy, copy.split, [first, second])
    copy.events.close()


def test_the_demo_records_a_validation_candidate_not_the_test_target(tmp_path: Path) -> None:
    from cli.main import app

    home = copy_store(tmp_path / "home", TINY_MOVIES)
    result = CliRunner().invoke(
        app, ["demo", "--dataset", TINY_MOVIES, "--user", "7", "--home", str(home)]
    )
    assert result.exit_code == 0, result.output
    assert "validation candidates" in result.output
    from memory_store.workspace import get_workspace

    live = get_workspace(TINY_MOVIES, home=str(home))  # the store the demo wrote to
    (event,) = live.events.interactions()
    code = live.user_code("7")
    assert live.item_code(event.item_id) != _held_out(live, "test")[code]
    assert live.item_code(event.item_id) in live.benchmark_candidates("valid")[code]


def test_the_studio_seed_never_picks_a_held_out_item(ws) -> None:  # noqa: F811
    held = [_held_out(ws, w) for w in ("valid", "test")]
    for user in _evaluated(ws):
        items = {ws.item_code(i) for i in demo_items(ws, ws.dataset.user_ids[user])}
        assert len(items) == 3
        assert not items & {h[user] for h in held}
        assert not items & set(ws.graph.user_items(user).tolist())


def test_title_ties_use_train_popularity_only(ws) -> None:  # noqa: F811
    from roles.catalogue_index import CatalogueIndex

    train = np.bincount(ws.split.train["item"], minlength=ws.dataset.n_items)
    index = CatalogueIndex(ws.dataset)
    assert (index._titles.popularity == train).all()
    assert (ws.dataset.item_popularity() > train).any()  # all interactions would include test


def test_retrieval_popularity_counts_train_and_live_interactions_only(ws) -> None:  # noqa: F811
    train = np.bincount(ws.split.train["item"], minlength=ws.dataset.n_items)
    assert (ws.graph.item_degree == train).all()
    assert (ws.dataset.item_popularity() > train).any()  # what it used to read: test included
    user = _evaluated(ws)[2]
    unseen = next(i for i in range(ws.dataset.n_items) if not ws.graph.has(user, i))
    record_interaction(ws, ws.dataset.user_ids[user], ws.dataset.item_ids[unseen], "positive")
    assert ws.graph.item_degree[unseen] == train[unseen] + 1


def test_concurrent_evaluations_index_once(tmp_path: Path, monkeypatch) -> None:
    builds = []

    def slow_build(dataset, *, data_dir=None, home=None):
        builds.append(dataset)
        time.sleep(0.3)  # long enough for the other thread to arrive while this one builds
        store = runner.default_store_dir(dataset, home)
        store.mkdir(parents=True, exist_ok=True)
        (store / INDEX_MARKER).write_text("{}")

    monkeypatch.setattr(runner, "build_index", slow_build)
    threads = [
        threading.Thread(target=runner.ensure_index, args=(TINY_MOVIES, tmp_path, None))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == [TINY_MOVIES]


def test_method_groups_expand_without_duplicates() -> None:
    from evaluation.sasrec import available

    sasrec = ["sasrec"] if available() else []  # the optional extra: in `strong` when installed
    assert expand_methods("strong") == ["recency-knn", "transition", "ease", *sasrec]
    names = expand_methods("all,strong,memrec")
    assert len(names) == len(set(names)) == 15 + len(sasrec)
    assert set(METHOD_GROUPS["all"]).isdisjoint(METHOD_GROUPS["strong"])


@pytest.mark.slow  # a full evaluation of a folder, several methods (about a minute)
async def test_a_generic_folder_evaluates_end_to_end(tmp_path: Path) -> None:
    home = copy_store(tmp_path / "home", TINY_MOVIES)
    warmup.clear_warm_cache()
    results = {}
    for method in ("memrec", "recency-knn", "transition", "ease", "mostpop"):
        results[method] = await runner.run_eval(
            TINY_MOVIES, method, out_dir=tmp_path / "runs", home=home, progress=False
        )
    warmup.clear_warm_cache()
    memrec = results["memrec"]
    assert memrec.dataset == "tiny-movies" and memrec.failures == 0
    assert memrec.n_users == len(memrec.ranks) == 40 and min(memrec.ranks) >= 1
    assert memrec.config["offline_ranker"]["tuned"] is True
    for name in ("recency-knn", "transition", "ease"):
        run = results[name]
        assert run.users == memrec.users and run.failures == 0
        assert run.config["params"] and 0 <= run.config["valid_h1"] <= 1
        assert run.config["grid_points"] > 0 and "hash" in run.config["ties"]


@pytest.mark.slow  # two `memrec eval` processes on a fresh home
def test_jobs_2_on_a_fresh_home_index_once_and_both_finish(tmp_path: Path) -> None:
    import subprocess
    import sys

    home, out = tmp_path / "home", tmp_path / "runs"
    memrec = str(Path(sys.executable).with_name("memrec"))
    done = subprocess.run(
        [memrec, "eval", "--dataset", TINY_MOVIES, "--method", "mostpop,recency-knn"]
        + ["--jobs", "2", "--home", str(home), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(out.glob("*.json"))) == 2
    assert len(list((home / "stores").glob("*/index.json"))) == 1
