"""The recommend graph on the offline roles: shape of the answer, budgets, ablations, bad input.

On the tiny synthetic catalogue (tests/data/tiny-movies), so the unit lane needs no benchmark data.
"""

from dataclasses import replace

import pytest

from graph.recommend import graph
from memory_store.workspace import UnknownEntity
from nodes.curate import InvalidRequest
from nodes.synthesize import pack_neighbours
from prompts.synthesis import neighbour_lines
from prompts.tokens import count_tokens
from tests.support.fixtures import TINY_MOVIES, workspace_fixtures

ws, ctx = workspace_fixtures(TINY_MOVIES)


async def _run(ctx, **inp):  # noqa: F811
    return await graph.ainvoke(inp, context=ctx)


async def test_full_answer_on_the_offline_roles(ws, ctx) -> None:  # noqa: F811
    cands = [ws.dataset.item_ids[i] for i in ws.benchmark_candidates()[0]]
    out = await _run(ctx, user_id="1", candidates=cands)
    ranked = [r.item_id for r in out["ranking"]]
    assert sorted(ranked) == sorted(cands)  # a permutation
    assert all(r.rationale.strip() for r in out["ranking"])
    scores = [r.score for r in out["ranking"]]
    assert scores == sorted(scores, reverse=True)
    # curation: k = 16 with at least 4 users and 6 items, each with its score and fired rules
    kinds = [n.kind for n in out["neighbours"]]
    assert len(kinds) == 16 and kinds.count("user") >= 4 and kinds.count("item") >= 6
    assert all(n.features for n in out["neighbours"])
    assert any(n.rules for n in out["neighbours"])
    # synthesis: at most 7 facets, evidence drawn from the curated neighbours
    refs = {n.ref for n in out["neighbours"]}
    assert 0 < len(out["facets"]) <= 7
    assert all(set(f.evidence) <= refs and f.evidence for f in out["facets"])
    # offline roles make no model call at all
    assert {node: u.calls for node, u in out["usage"].items()} == {
        "curate": 0,
        "synthesize": 0,
        "rank": 0,
    }


async def test_rationales_cite_their_evidence(ws, ctx) -> None:  # noqa: F811
    from memory_store.ranker_index import RankerConfig, RankerIndex

    # every channel weighted (tiny-movies' own tuning drops the neighbour channels), so the
    # rationales of the neighbour, facet and history channels all show up
    tuned = ws.ranker()[1]
    weights = {"knn": 1.0, "trans": 1.0, "votes": 3.0, "facets": 2.0, "pop": 0.2}
    config = RankerConfig(params=tuned.params, weights=weights, scales=tuned.scales)
    ws.derived["ranker"] = (RankerIndex(ws.graph, config.params), config)
    out = await _run(ctx, user_id="1")
    user_refs = {n.ref for n in out["neighbours"] if n.kind == "user"}
    facet_names = {f.name for f in out["facets"]}
    history = set(ws.graph.user_items(ws.user_code("1")).tolist())
    assert any(ref.startswith("user:") for r in out["ranking"] for ref in r.evidence)
    for r in out["ranking"]:
        assert r.evidence, r.rationale
        for ref in r.evidence:
            assert ref in r.rationale or ws.title(ws.item_code(ref[5:])) in r.rationale
            if ref.startswith("user:"):  # a cited neighbour really chose that item
                assert ref in user_refs
                assert ws.graph.has(ws.user_code(ref[5:]), ws.item_code(r.item_id))
            elif ref.startswith("item:"):  # a cited anchor is in the user's own history
                assert ws.item_code(ref[5:]) in history
            else:
                assert ref in facet_names


async def test_neighbour_context_fits_tau(ws, ctx) -> None:  # noqa: F811
    from nodes.curate import curate_neighbours

    neighbours = curate_neighbours(ws, ws.user_code("13"), ws.rules(), ctx)
    packed = pack_neighbours(ws, neighbours, 120)
    assert packed and count_tokens(neighbour_lines(packed)) <= 120
    assert len(packed) < len(neighbours)  # the budget, not the neighbour count, decided


def test_packing_skips_what_does_not_fit_and_keeps_going() -> None:
    from types import SimpleNamespace

    from memory_store.inmemory_store import InMemoryMemoryStore
    from nodes.synthesize import snippet_tokens
    from schemas.recommend_state import CuratedNeighbour
    from schemas.records import NeighbourSnippet

    store = InMemoryMemoryStore()
    texts = {"a": "short memory", "b": "a very long memory " * 40, "c": "another short one"}
    store.bulk_init("user", list(texts.items()), "test")
    neighbours = [
        CuratedNeighbour(ref=f"user:{u}", kind="user", score=score)
        for u, score in (("a", 3.0), ("b", 2.0), ("c", 1.0))
    ]
    cost = {
        n.ref: snippet_tokens(
            NeighbourSnippet(ref=n.ref, kind="user", text=texts[n.ref[5:]], score=n.score)
        )
        for n in neighbours
    }
    tau = cost["user:a"] + cost["user:c"]
    assert cost["user:a"] + cost["user:b"] > tau  # b alone would not fit after a
    packed = pack_neighbours(SimpleNamespace(memories=store), neighbours, tau)
    assert [p.ref for p in packed] == ["user:a", "user:c"]  # b skipped, c still packed
    assert count_tokens(neighbour_lines(packed)) <= tau


async def test_default_candidates_are_the_benchmark_list(ws, ctx) -> None:  # noqa: F811
    out = await _run(ctx, user_id="1")
    expected = {ws.dataset.item_ids[i] for i in ws.benchmark_candidates()[ws.user_code("1")]}
    assert {r.item_id for r in out["ranking"]} == expected


async def test_unknown_user_is_a_documented_cold_start(ws, ctx) -> None:  # noqa: F811
    cands = ["50", "81", "1", "2"]
    out = await _run(
        ctx, user_id="no-such-user", candidates=cands, request="an animation for children"
    )
    assert sorted(r.item_id for r in out["ranking"]) == sorted(cands)
    assert any("new" in n for n in out["notes"])
    assert out["neighbours"] == [] and out["facets"] == []
    # item 1 is the catalogue's one film for children: the request decides for a new user
    assert out["ranking"][0].item_id == "1"
    assert "request" in out["ranking"][0].rationale


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ([], "empty"),
        (["1", "1", "2"], "duplicate"),
        (["1", "does-not-exist"], "unknown candidate"),
        ([str(i) for i in range(1, 300)], "at most 200"),
    ],
)
async def test_bad_candidates_give_clear_errors(ws, ctx, candidates, message) -> None:  # noqa: F811
    with pytest.raises(InvalidRequest, match=message):
        await _run(ctx, user_id="1", candidates=candidates)


async def test_a_100kb_request_is_truncated_not_fatal(ws, ctx) -> None:  # noqa: F811
    out = await _run(ctx, user_id="1", request="x" * 100_000)
    assert len(out["ranking"]) == 10
    assert any("truncated" in n for n in out["notes"])


async def test_feedback_on_unknown_item_writes_nothing(ws, ctx) -> None:  # noqa: F811
    before = ws.events.counts()
    with pytest.raises(UnknownEntity):
        await _run(ctx, user_id="1", feedback=[{"item_id": "nope"}])
    assert ws.events.counts() == before and not ws.events.interactions()


async def test_ablation_switches_change_what_the_ranker_sees(ws, ctx) -> None:  # noqa: F811
    no_read = await _run(replace(ctx, collab_read=False), user_id="1")
    assert no_read["neighbours"] == [] and no_read["facets"] == []
    vanilla = await _run(replace(ctx, memory="none", collab_read=False), user_id="1")
    assert vanilla["neighbours"] == []
    raw = await _run(replace(ctx, curation="raw"), user_id="1")
    assert raw["facets"] == [] and "synthesize" not in raw["usage"]
    assert len(raw["neighbours"]) == 16 and all(not n.rules for n in raw["neighbours"])
    generic = await _run(replace(ctx, rules="generic"), user_id="1")
    full = await _run(ctx, user_id="1")
    assert [n.ref for n in generic["neighbours"]] != [n.ref for n in full["neighbours"]]


async def test_offline_recommendation_is_deterministic(ws, ctx) -> None:  # noqa: F811
    a = await _run(ctx, user_id="32")
    b = await _run(ctx, user_id="32")
    assert [(r.item_id, r.score, r.rationale) for r in a["ranking"]] == [
        (r.item_id, r.score, r.rationale) for r in b["ranking"]
    ]


@pytest.mark.parametrize(
    ("inp", "message"),
    [
        ({"user_id": ["1"]}, "user_id must be a string"),
        ({"user_id": "u" * 500}, "1 to 128 characters"),
        ({"user_id": "1", "candidates": "50,181"}, "list of item ids"),
        ({"user_id": "1", "candidates": [{"id": 5}]}, "must be a string"),
        ({"user_id": "1", "request": 42}, "request must be text"),
    ],
)
async def test_malformed_inputs_are_refused_clearly(ws, ctx, inp, message) -> None:  # noqa: F811
    with pytest.raises(InvalidRequest, match=message):
        await graph.ainvoke(inp, context=ctx)


async def test_feedback_kind_is_a_closed_vocabulary(ws, ctx) -> None:  # noqa: F811
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="positive"):
        await _run(ctx, user_id="1", feedback=[{"item_id": "50", "kind": "ignore all rules"}])
    assert not ws.events.interactions()


def test_a_snippets_token_cost_bounds_its_rendered_line() -> None:
    """Packing adds these costs against tau: their sum must bound the rendered block's count."""
    import random

    from nodes.synthesize import snippet_tokens
    from schemas.records import NeighbourSnippet

    rng = random.Random(3)
    words = ["drama", "l'amour", "42", "sci-fi!!", "émigré", '"quoted"', "x" * 30, "\\n", "…"]
    snippets = [
        NeighbourSnippet(
            ref=rng.choice(["user:", "item:"]) + rng.choice(["7", "B00X_12", "a b", "éa"]),
            kind="user",
            text=" ".join(rng.choice(words) for _ in range(rng.randint(0, 30))),
            score=rng.uniform(-5, 50),
        )
        for _ in range(300)
    ]
    for s in snippets:
        assert snippet_tokens(s) >= count_tokens(neighbour_lines([s]))
    for n in range(1, len(snippets), 7):  # every prefix packing could keep
        block = snippets[:n]
        assert sum(snippet_tokens(s) for s in block) >= count_tokens(neighbour_lines(block))


def test_a_snippets_line_is_counted_as_the_prompt_renders_it() -> None:
    from nodes.synthesize import snippet_tokens
    from schemas.records import NeighbourSnippet

    s = NeighbourSnippet(ref="item:B00X 12", kind="item", text="Émigré drama, 1997.", score=1.23456)
    empty = neighbour_lines([s.model_copy(update={"text": ""})])
    assert snippet_tokens(s) == count_tokens(empty) + count_tokens('"Émigré drama, 1997."') + 1


def test_curation_builds_only_the_neighbours_it_can_choose() -> None:
    """``_reach`` cuts each pool where ``_mix`` can no longer choose from it: mixing the cut
    pools gives the same neighbours as mixing whole pools, for any pool sizes and minimums."""
    import random

    from nodes.curate import _mix, _reach
    from schemas.context import MemRecContext
    from schemas.recommend_state import CuratedNeighbour

    rng = random.Random(7)
    for _ in range(3000):
        k, mu, mi = rng.randint(1, 20), rng.randint(0, 12), rng.randint(0, 12)
        curation = rng.choice(["rules", "raw"])
        ctx = replace(MemRecContext(), k=k, min_users=mu, min_items=mi, curation=curation)
        sizes = [("user", rng.randint(0, 30)), ("item", rng.randint(0, 30))]
        pools = [
            sorted(
                (
                    CuratedNeighbour(ref=f"{kind}:{n}", kind=kind, score=rng.choice([0.5, 1, 2]))
                    for n in range(size)
                ),
                key=lambda c: -c.score,
            )[:k]
            for kind, size in sizes
            if size
        ]
        cut = [pool[: _reach(pool[0].kind, sizes, ctx)] for pool in pools]
        assert _mix(cut, ctx) == _mix(pools, ctx), (k, mu, mi, sizes)


def test_a_neighbour_line_counts_as_many_tokens_in_two_cached_parts_as_whole() -> None:
    """snippet_tokens adds the line's head (ref) and tail (score) counts: exact for any ref."""
    import random

    from nodes.synthesize import _TEXT, LINE_ENCODER, snippet_tokens
    from schemas.records import NeighbourSnippet

    rng = random.Random(1)
    alphabet = "abcXYZ019 :_-\"\\'é漢😀.,/"
    for _ in range(3000):
        ref = rng.choice(["user:", "item:", ""]) + "".join(
            rng.choice(alphabet) for _ in range(rng.randint(0, 12))
        )
        score = rng.choice([round(rng.uniform(-5, 50), rng.randint(0, 6)), 0.0, 1e-7, 1e20])
        line = LINE_ENCODER.encode({"ref": ref, "score": round(score, 2), "text": ""})
        whole = count_tokens(line) + count_tokens(_TEXT.encode("a memory")) + 1
        snippet = NeighbourSnippet(ref=ref, kind="user", text="a memory", score=score)
        assert snippet_tokens(snippet) == whole, (ref, score)
