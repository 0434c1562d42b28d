"""InstructRec import: iAgent's pickle -> generic folder with instructions and fixed candidates.

A small synthetic pickle of the iAgent schema (one row per user: reviewerID, asin with the target
last, aligned title / description / reviewText, instruction, persona, ranked_lists) is imported
with the CLI; ``memrec eval`` then ranks each user's own candidates with their instruction.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import evaluation.ranking as ranking
from cli.main import app
from dataio.candidates import ProtocolError, ensure_candidates
from dataio.dataset import DatasetError
from dataio.datasets import load_dataset
from dataio.instructrec import import_instructrec
from dataio.split import split_leave_one_out
from evaluation.runner import run_eval

N_ITEMS = 60
GENRES = ["mystery", "romance", "history", "fantasy"]


def _pickle(path: Path, users: int = 14) -> pd.DataFrame:
    """A synthetic InstructRec frame: ids are mapping indexes (ints), lists numpy arrays."""
    rng = random.Random(5)
    rows = []
    for u in range(users):
        history = rng.sample(range(N_ITEMS), rng.randint(4, 8))
        negatives = rng.sample([i for i in range(N_ITEMS) if i not in history], 9)
        ranked = negatives[:4] + [history[-1]] + negatives[4:]
        rows.append(
            {
                "reviewerID": f"A{u:03d}XR",
                "asin": np.array(history),
                "title": [f"Book {i}" for i in history],
                "description": [f"A {GENRES[i % 4]} novel number {i}." for i in history],
                "reviewText": [f"I liked book {i} a lot, says {u}." for i in history],
                "instruction": f"I want a {GENRES[u % 4]} book for a long train ride.",
                "persona": f"Reader {u} from somewhere.",
                "ranked_lists": np.array(ranked),
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_pickle(path)
    return frame


def _mapping(path: Path) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "asin", "title", "description"])
        for i in range(N_ITEMS):
            writer.writerow([i, f"B{i:05d}", f"Book {i}", f"A {GENRES[i % 4]} novel."])


def test_cli_imports_users_items_instructions_and_candidate_lists(tmp_path: Path) -> None:
    frame = _pickle(tmp_path / "booksAll_recagent.pkl")
    _mapping(tmp_path / "map.csv")
    result = CliRunner().invoke(
        app,
        [
            "data",
            "import-instructrec",
            str(tmp_path / "booksAll_recagent.pkl"),
            "--mapping",
            str(tmp_path / "map.csv"),
            "--data-dir",
            str(tmp_path / "data"),
        ],
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "data" / "instructrec-books"
    assert "imported 14 users" in result.output and str(folder) in result.output.replace("\n", "")
    ds = load_dataset(str(folder))
    row = frame.iloc[3]
    user = row["reviewerID"]
    items, _ = (
        ds.interactions[ds.interactions["user"] == ds.user_index[user]][["item", "ts"]].to_numpy().T
    )
    assert [ds.item_ids[i] for i in items] == [str(i) for i in row["asin"]]  # order kept
    assert ds.requests[user] == row["instruction"]
    assert ds.fixed_candidates[user] == [str(i) for i in row["ranked_lists"]]
    target = str(row["asin"][-1])
    assert ds.item_titles[ds.item_index[target]] == f"Book {target}"
    negative = str(row["ranked_lists"][0])  # in no history: its text comes from the mapping
    assert ds.item_titles[ds.item_index[negative]] == f"Book {negative}"
    assert all("liked book" not in t for t in ds.item_texts)  # reviews stay out of item text
    split = split_leave_one_out(ds)
    cands = ensure_candidates(tmp_path / "store", ds, split, "test", 10, 0)
    assert cands.users[ds.user_index[user]] == [ds.item_index[str(i)] for i in row["ranked_lists"]]
    with pytest.raises(ProtocolError, match="--candidates 10"):
        ensure_candidates(tmp_path / "store", ds, split, "test", 20, 0)


async def test_eval_ranks_the_fixed_lists_with_each_users_instruction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = _pickle(tmp_path / "goodreadsAll_recagent.pkl")
    folder = tmp_path / "instructrec-goodreads"
    import_instructrec(tmp_path / "goodreadsAll_recagent.pkl", folder)
    seen: dict[str, tuple[list[str], str | None]] = {}
    real = ranking._recommend_graph()

    class Recording:
        async def ainvoke(self, inp: dict, context: object) -> dict:
            seen[inp["user_id"]] = (list(inp["candidates"]), inp["request"])
            return await real.ainvoke(inp, context=context)

    monkeypatch.setattr(ranking, "_recommend_graph", lambda: Recording())
    result = await run_eval(
        str(folder), "memrec", home=tmp_path / "home", out_dir=tmp_path / "runs", progress=False
    )
    assert result.n_users == len(frame) and result.failures == 0
    for row in frame.itertuples():
        candidates, request = seen[row.reviewerID]
        assert candidates == [str(i) for i in row.ranked_lists]
        assert request == row.instruction


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    frame = _pickle(tmp_path / "x.pkl", users=4)
    frame.drop(columns=["ranked_lists"]).to_pickle(tmp_path / "no_lists.pkl")
    with pytest.raises(DatasetError, match="lacks the column.*ranked_lists"):
        import_instructrec(tmp_path / "no_lists.pkl", tmp_path / "out")
    frame.at[0, "ranked_lists"] = np.array([999, 998])
    frame.to_pickle(tmp_path / "no_target.pkl")
    with pytest.raises(DatasetError, match="do not hold their last item"):
        import_instructrec(tmp_path / "no_target.pkl", tmp_path / "out")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="could not be read"):
        import_instructrec(tmp_path / "junk.pkl", tmp_path / "out")


def test_generic_folder_takes_a_request_or_instruction_column(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    import_instructrec(_pickle_path(tmp_path), folder)
    (folder / "candidates.csv").unlink()  # sampled candidates again
    (folder / "requests.csv").write_text("user_id,instruction\nA001XR,  something short \n")
    ds = load_dataset(str(folder))
    assert ds.requests == {"A001XR": "something short"} and ds.fixed_candidates == {}
    (folder / "requests.csv").write_text("user_id,request\nnobody,hello\n")
    with pytest.raises(DatasetError, match="not in interactions.csv.*'nobody'"):
        load_dataset(str(folder))


def _pickle_path(tmp_path: Path) -> Path:
    path = tmp_path / "p.pkl"
    _pickle(path, users=5)
    return path
