"""The benchmark runner on an indexed ml-100k: outputs, resume, failures, leakage, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dataio.candidates import ProtocolError, candidates_path
from evaluation import ranking, results, warmup
from evaluation.leakage import LeakageError
from evaluation.methods import METHODS, UnknownMethod, get_method, method_context
from evaluation.metrics import METRICS, target_rank
from evaluation.results import EvalError
from evaluation.runner import run_eval
from memory_store.catalog import load_catalog
from memory_store.inmemory_store import InMemoryMemoryStore
from schemas.context import MemRecContext
from schemas.records import CallUsage

DATA_DIR = Path(
    os.environ.get("MEMREC_DATA_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
USERS = 40

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA_DIR / "ml-100k" / "u.data").is_file(), reason=f"benchmark data not at {DATA_DIR}"
    ),
]


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from services.index import build_index

    path = tmp_path_factory.mktemp("memrec-home")
    build_index("ml-100k", data_dir=DATA_DIR, home=path)
    return path


@pytest.fixture(scope="session")
def catalog(home: Path):
    return load_catalog(home / "stores" / "ml-100k")


@pytest.fixture(autouse=True)
def fresh_warm_ups():
    warmup.clear_warm_cache()
    yield
    warmup.clear_warm_cache()


async def _run(home: Path, out: Path, method: str = "memrec", **kwargs) -> results.RunResult:
    kwargs.setdefault("users", USERS)
    return await run_eval(
        "ml-100k", method, out_dir=out, home=home, data_dir=DATA_DIR, progress=False, **kwargs
    )


def _pairs(split, which: str) -> dict[str, str]:
    frame = split.valid if which == "valid" else split.test
    return dict(zip(frame["user"].tolist(), frame["item"].tolist(), strict=True))


async def test_agentic_run_writes_json_and_markdown(home: Path, tmp_path: Path) -> None:
    result = await _run(home, tmp_path)
    path = tmp_path / f"{result.run}.json"
    raw = json.loads(path.read_text())
    assert raw["format_version"] == results.FORMAT_VERSION
    assert raw["method"] == "memrec" and raw["dataset"] == "ml-100k" and raw["roles"] == "offline"
    assert raw["n_users"] == USERS == len(raw["ranks"]) == len(raw["users"])
    assert len(raw["train_degree"]) == USERS and min(raw["train_degree"]) >= 1
    for name in METRICS:
        summary = raw["metrics"][name]
        assert summary["lo"] <= summary["mean"] <= summary["hi"]
    assert raw["config"]["collab_read"] is True and raw["config"]["k"] == 16
    assert {"curate", "synthesize", "rank", "request"} <= set(raw["nodes"])
    assert raw["nodes"]["request"]["latency_ms_p99"] >= raw["nodes"]["request"]["latency_ms_p50"]
    assert raw["warmup"]["events"] == USERS and raw["failures"] == 0
    assert all(1 <= r <= 10 for r in raw["ranks"])
    markdown = (tmp_path / f"{result.run}.md").read_text()
    assert all(name in markdown for name in METRICS) and "memrec" in markdown
    assert f"{raw['metrics']['H@1']['mean']:.3f}" in markdown
    assert not (tmp_path / f"{result.run}.partial.jsonl").exists()


async def test_classical_run_is_tuned_and_scored_on_the_same_users(
    home: Path, tmp_path: Path
) -> None:
    agentic = await _run(home, tmp_path, "memrec-no-write")
    classical = await _run(home, tmp_path, "mostpop")
    assert classical.users == agentic.users
    assert classical.config["baseline"] == "mostpop" and classical.config["valid_h1"] > 0.2
    assert classical.roles is None and classical.nodes == {}
    assert (tmp_path / f"{classical.run}.md").exists()


async def test_resume_after_crash_gives_identical_results(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = await _run(home, tmp_path / "ref", "isolated")
    real_rank_one = ranking.rank_one
    calls = {"n": 0}

    async def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 15:
            raise RuntimeError("simulated crash")
        return await real_rank_one(*args, **kwargs)

    monkeypatch.setattr(ranking, "rank_one", crashing)
    out = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="simulated crash"):
        await _run(home, out, "isolated", concurrency=1)
    partial = out / f"{reference.run}.partial.jsonl"
    text = partial.read_text()
    assert len(text.splitlines()) == 1 + 15
    partial.write_text(text[: len(text) - 40])  # cut the last line mid-way
    warmup.clear_warm_cache()  # a restart is a new process: the warm-up is rebuilt
    ranked = []

    async def counting(ctx, ws, user, *args):
        ranked.append(user)
        return await real_rank_one(ctx, ws, user, *args)

    monkeypatch.setattr(ranking, "rank_one", counting)
    resumed = await _run(home, out, "isolated")
    assert len(ranked) == USERS - 14  # 14 kept, the cut line redone
    assert resumed.ranks == reference.ranks and resumed.users == reference.users
    assert resumed.metrics == reference.metrics
    assert not partial.exists()


async def test_partial_file_of_another_configuration_is_refused(home: Path, tmp_path: Path) -> None:
    result = await _run(home, tmp_path, "memrec-no-write")
    partial = tmp_path / f"{result.run}.partial.jsonl"
    partial.write_text(json.dumps({"format_version": 0, "run": result.run}) + "\n")
    with pytest.raises(EvalError, match="belongs to another run"):
        await _run(home, tmp_path, "memrec-no-write")


class _FlakyGraph:
    """Fails one user in three, returns a non-permutation for another, ranks the rest as given."""

    async def ainvoke(self, inp: dict, context: object) -> dict:
        kind = int(inp["user_id"]) % 3
        if kind == 0:
            raise RuntimeError("model exploded")
        if kind == 1:
            return {"ranking": [{"item_id": inp["candidates"][0]}], "usage": {}}
        ranking = [{"item_id": c} for c in inp["candidates"]]
        return {"ranking": ranking, "usage": {"rank": CallUsage(tokens_in=100, tokens_out=20)}}


async def test_failed_and_malformed_rankings_count_as_misses(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog
) -> None:
    monkeypatch.setattr(ranking, "_recommend_graph", lambda: _FlakyGraph())
    result = await _run(home, tmp_path, "memrec-no-write")
    ds, split = catalog
    cands = json.loads(candidates_path(home / "stores" / "ml-100k", "test", 10, 0).read_text())
    targets = {ds.user_ids[u]: ds.item_ids[i] for u, i in _pairs(split, "test").items()}
    expected = [
        0 if int(u) % 3 != 2 else target_rank(cands["users"][u], targets[u]) for u in result.users
    ]
    assert result.n_users == USERS and result.ranks == expected
    assert result.failures == sum(int(u) % 3 != 2 for u in result.users) > 0
    assert result.metrics["H@1"].mean == pytest.approx(expected.count(1) / USERS)
    assert any("model exploded" in e for e in result.errors)
    assert any("not a permutation" in e for e in result.errors)
    assert result.tokens_per_request == pytest.approx(120.0)


async def test_test_targets_never_reach_state_before_ranking(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog
) -> None:
    ds, split = catalog
    valid = {(ds.user_ids[u], ds.item_ids[i]) for u, i in _pairs(split, "valid").items()}
    test = {(ds.user_ids[u], ds.item_ids[i]) for u, i in _pairs(split, "test").items()}
    timeline: list[tuple[str, object]] = []
    real_record, real_propagate = warmup.record_interaction, warmup.propagate_graph
    real_put, real_rank_one = InMemoryMemoryStore.put, ranking.rank_one

    def spy_record(ws, user_id, item_id, *args, **kwargs):
        timeline.append(("record", (user_id, item_id)))
        return real_record(ws, user_id, item_id, *args, **kwargs)

    class SpyPropagate:  # the propagate graph, spied on
        async def ainvoke(self, inp, **kwargs):
            event = inp["event"]
            timeline.append(("propagate", (event.user_id, event.item_id)))
            return await real_propagate.ainvoke(inp, **kwargs)

    def spy_put(self, kind, entity_id, text, **kwargs):
        timeline.append(("write", (kind, entity_id)))
        return real_put(self, kind, entity_id, text, **kwargs)

    real_put_many = InMemoryMemoryStore.put_many

    def spy_put_many(self, kind, writes, **kwargs):  # propagation writes a job's memories batched
        timeline.extend(("write", (kind, w[0])) for w in writes)
        return real_put_many(self, kind, writes, **kwargs)

    async def spy_rank_one(ctx, ws, user, *args):
        timeline.append(("rank", ds.user_ids[user]))
        result = await real_rank_one(ctx, ws, user, *args)
        leaked = [e for e in ws.events.interactions() if (e.user_id, e.item_id) in test]
        assert not leaked, leaked
        return result

    monkeypatch.setattr(warmup, "record_interaction", spy_record)
    monkeypatch.setattr(warmup, "propagate_graph", SpyPropagate())
    monkeypatch.setattr(InMemoryMemoryStore, "put", spy_put)
    monkeypatch.setattr(InMemoryMemoryStore, "put_many", spy_put_many)
    monkeypatch.setattr(ranking, "rank_one", spy_rank_one)
    result = await _run(home, tmp_path, "memrec")

    kinds = [kind for kind, _ in timeline]
    assert kinds.count("record") == kinds.count("propagate") == USERS
    assert kinds.count("write") > USERS  # user, item and neighbour memories were written
    assert kinds.count("rank") == USERS
    first_rank = kinds.index("rank")
    assert "write" not in kinds[first_rank:] and "record" not in kinds[first_rank:]
    evaluated = set(result.users)
    for kind, payload in timeline:
        if kind in ("record", "propagate"):
            assert payload in valid and payload[0] in evaluated
            assert payload not in test or payload in valid  # a repeat of the valid item only


async def test_leak_guard_stops_a_run_whose_warm_up_leaks(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalog
) -> None:
    ds, split = catalog
    real_warm_up = warmup.warm_up

    async def leaky(ws, ctx, split_, users):
        stats = await real_warm_up(ws, ctx, split_, users)
        user = users[0]
        item = _pairs(split_, "test")[user]
        warmup.record_interaction(ws, ds.user_ids[user], ds.item_ids[item], "positive", 1.0)
        return stats

    monkeypatch.setattr(warmup, "warm_up", leaky)
    with pytest.raises(LeakageError, match=r"not warm-up \(validation\) interactions"):
        await _run(home, tmp_path, "memrec-no-read")


async def test_no_write_still_records_the_warm_up_interactions(home: Path, tmp_path: Path) -> None:
    result = await _run(home, tmp_path, "memrec-no-write")
    assert result.warmup is not None and result.warmup.events == USERS
    assert result.warmup.usage.calls == 0  # offline roles: the one call per event is not a model


async def test_warm_up_is_shared_only_between_runs_that_propagate_alike(
    home: Path, tmp_path: Path, catalog
) -> None:
    first = await _run(home, tmp_path, "memrec")
    no_read = await _run(home, tmp_path, "memrec-no-read")
    naive = await _run(home, tmp_path, "naive-collab")
    generic = await _run(home, tmp_path, "memrec-generic-rules")
    assert first.warmup and not first.warmup.reused
    assert no_read.warmup and no_read.warmup.reused and no_read.warmup.events == USERS
    # raw curation only changes reading: propagation curates by the rules either way
    assert naive.warmup and naive.warmup.reused
    # other rules curate other neighbours to patch: a warm-up of its own
    assert generic.warmup and not generic.warmup.reused
    warmup.clear_warm_cache()
    alone = await _run(home, tmp_path, "memrec-no-read")
    assert alone.warmup and not alone.warmup.reused
    assert alone.ranks == no_read.ranks and alone.metrics == no_read.metrics


async def test_read_only_switches_do_not_change_the_warmed_state(
    home: Path, tmp_path: Path
) -> None:
    """Pins the assumption behind sharing: propagation ignores collab_read and curation."""
    from dataio.paths import store_dir
    from memory_store.workspace import get_workspace, register_workspace

    ds, split = load_catalog(home / "stores" / "ml-100k")
    users = sorted(split.test["user"].tolist())[:USERS]
    states = []
    for name in ("memrec", "memrec-no-read", "naive-collab"):
        run_home = str(tmp_path / name)  # the clone lives in a real folder that home names
        ws = get_workspace("ml-100k", home=home).clone(store_dir("ml-100k", run_home))
        register_workspace(ws, "ml-100k", run_home)
        base = MemRecContext(dataset="ml-100k", roles="offline", home=run_home, chroma_url=None)
        ctx = method_context(get_method(name), base)
        await warmup.warm_up(ws, ctx, split, users)
        texts = {
            kind: {i: r.text for i, r in ws.memories.get_many(kind, ws.memories.ids(kind)).items()}
            for kind in ("user", "item")
        }
        states.append((texts, ws.vectors.users.copy(), ws.graph.user_items(users[0]).tolist()))
        ws.events.close()
    assert states[0][0] == states[1][0] == states[2][0]
    assert (states[0][1] == states[1][1]).all() and states[0][2] == states[2][2]
    assert (states[0][1] == states[2][1]).all()


def test_methods_map_to_context_switches() -> None:
    assert get_method("vanilla").switches == {"memory": "none"}
    assert get_method("isolated").switches == {"memory": "own"}
    assert get_method("memrec-no-read").switches == {"collab_read": False}
    assert get_method("memrec").switches == {}
    assert get_method("naive-collab").switches == {"curation": "raw"}
    assert get_method("memrec-no-write").switches == {"collab_write": False}
    assert get_method("memrec-generic-rules").switches == {"rules": "generic"}
    assert not get_method("als").agentic and len(METHODS) == 16  # SASRec included
    assert not get_method("ease").agentic and get_method("recency-knn").family == "classical"


async def test_bad_input_is_a_clear_error(home: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownMethod, match="memrec-no-read.*"):
        await _run(home, tmp_path, "memrec-plus")
    with pytest.raises(EvalError, match=r"candidates must be one of \(10, 20\)"):
        await _run(home, tmp_path, candidates=15)

    old = tmp_path / "old"
    old.mkdir()
    (old / "x.json").write_text(json.dumps({"format_version": 0, "method": "memrec"}))
    with pytest.raises(EvalError, match="format_version 0"):
        await _run(home, old, "mostpop")

    source = candidates_path(home / "stores" / "ml-100k", "test", 10, 0)
    foreign = json.loads(source.read_text())
    foreign["dataset"] = "amazon-games"
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(foreign))
    with pytest.raises(ProtocolError, match="amazon-games"):
        await _run(home, tmp_path, "mostpop", candidates_file=path)


def _cli() -> typer.Typer:
    from cli.eval_cmds import register

    app = typer.Typer()
    register(app)
    return app


def test_cli_eval_prints_the_table_and_fails_with_exit_2(home: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    common = ["--dataset", "ml-100k", "--home", str(home), "--data-dir", str(DATA_DIR)]
    bad = cli.invoke(_cli(), ["eval", *common, "--method", "nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown method 'nope'" in bad.output
    args = ["eval", *common, "--method", "mostpop", "--users", "30", "--out", str(tmp_path)]
    good = cli.invoke(_cli(), args)
    assert good.exit_code == 0, good.output
    assert "mostpop" in good.output and "H@1" in good.output
    report = cli.invoke(_cli(), ["report", str(tmp_path)])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report.md").exists()
    missing = cli.invoke(_cli(), ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "not a folder" in missing.output
