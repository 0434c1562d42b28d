"""Dataset loaders on the shared benchmark data, on small hand-made folders, and data paths."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dataio.datasets import (
    KNOWN_DATASETS,
    Dataset,
    DatasetError,
    load_dataset,
)
from dataio.paths import resolve_data_dir, resolve_home, store_dir

DATA_DIR = Path(
    os.environ.get("MEMREC_DATA_DIR")
    or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
_skip_without_data = pytest.mark.skipif(
    not (DATA_DIR / "ml-100k" / "u.data").is_file(), reason=f"benchmark data not at {DATA_DIR}"
)


def needs_data(test: Callable[..., Any]) -> Callable[..., Any]:
    """A test of the benchmark data: the slow lane, skipped when the data is absent."""
    return pytest.mark.slow(_skip_without_data(test))


def assert_sorted_by_user_then_time(ds: Dataset) -> None:
    frame = ds.interactions
    order = np.lexsort((frame["ts"].to_numpy(), frame["user"].to_numpy()))
    assert (order == np.arange(len(frame))).all()
    assert not frame.duplicated(["user", "item"]).any()
    assert list(frame.columns) == ["user", "item", "ts", "rating"]


def title_of(ds: Dataset, item_id: str) -> str:
    return ds.item_titles[ds.item_index[item_id]]


# ------------------------------------------------------------------------- shared data


@needs_data
def test_ml100k_counts_text_and_order() -> None:
    ds = load_dataset("ml-100k", DATA_DIR)
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (943, 1682, 100_000)
    assert ds.has_clock and ds.name == "ml-100k"
    assert ds.user_ids[:3] == ["1", "2", "3"]  # integer ids in numeric order
    toy = ds.item_index["1"]
    assert ds.item_titles[toy] == "Toy Story (1995)"
    assert ds.item_texts[toy] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert ds.item_attributes[toy] == ["Animation", "Children's", "Comedy", "1990s"]
    assert set(ds.interactions["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ds.interactions["ts"].min() > 800_000_000  # real unix seconds
    assert_sorted_by_user_then_time(ds)


@needs_data
def test_amazon_scientific_sequences_and_text() -> None:
    ds = load_dataset("amazon-scientific", DATA_DIR)
    # README: 59,384 sequence entries; 289 are a user re-buying an item already in their
    # sequence, and a repeated (user, item) pair keeps only its first occurrence.
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (8442, 4385, 59_384 - 289)
    assert not ds.has_clock
    first_user = ds.interactions[ds.interactions["user"] == ds.user_index["0"]]
    assert [ds.item_ids[i] for i in first_user["item"]] == [str(i) for i in range(14)]
    assert first_user["ts"].tolist() == list(range(14))
    assert ds.interactions["rating"].isna().all()
    filament = ds.item_index["0"]  # ASIN B00TNNWMXI
    assert ds.item_titles[filament].startswith("eSUN Bronze filament 1.75mm")
    assert "Industrial & Scientific > Additive Manufacturing Products" in ds.item_texts[filament]
    assert ds.item_texts[filament].endswith(". eSUN.")
    attributes = ds.item_attributes[filament]
    assert "Additive Manufacturing Products" in attributes and attributes[-1] == "eSUN"
    assert "Industrial & Scientific" not in attributes
    assert_sorted_by_user_then_time(ds)


@needs_data
def test_amazon_games_loads_fast_with_title_attributes() -> None:
    start = time.perf_counter()
    ds = load_dataset("amazon-games", DATA_DIR)
    elapsed = time.perf_counter() - start
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (50_546, 16_859, 440_264)
    # About 1-3 s on one idle core; the bound is loose so a busy CI machine does not flake.
    assert elapsed < 30, f"amazon-games took {elapsed:.1f} s to load"
    assert title_of(ds, "0") == "Fire Emblem: The Sacred Stones"
    sonic = ds.item_attributes[ds.item_index["1000"]]
    assert title_of(ds, "1000") == "Sonic Riders: Zero Gravity - PlayStation 2"
    assert sonic[0] == "playstation 2" and "sonic" in sonic and "riders" in sonic
    assert max(len(a) for a in ds.item_attributes) <= 6
    assert not any("&amp;" in t for t in ds.item_titles)  # HTML entities decoded
    assert_sorted_by_user_then_time(ds)


def test_unknown_name_lists_known_datasets_and_generic_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("movielens-1m", tmp_path)
    message = str(err.value)
    assert all(name in message for name in KNOWN_DATASETS)
    assert "interactions.csv" in message and "items.csv" in message


def test_known_name_missing_from_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="MEMREC_DATA_DIR"):
        load_dataset("ml-100k", tmp_path)


# ----------------------------------------------------------------- hand-made known formats


def write_ml100k(folder: Path) -> None:
    folder.mkdir(parents=True)
    genres = ["unknown", "Action", "Comedy"] + [f"G{i}" for i in range(3, 19)]
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)) + "\n")
    flags = {"1": [0, 1, 1] + [0] * 16, "2": [1] + [0] * 18}
    rows = [
        f"1|Café Society (1994)|01-Jan-1994||http://x|{'|'.join(map(str, flags['1']))}",
        f"2|unknown|||http://y|{'|'.join(map(str, flags['2']))}",
    ]
    (folder / "u.item").write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    (folder / "u.data").write_text("7\t2\t4\t200\n7\t1\t5\t100\n3\t1\t3\t300\n7\t1\t5\t100\n")


def test_ml100k_format_latin1_and_genres(tmp_path: Path) -> None:
    write_ml100k(tmp_path / "ml-100k")
    ds = load_dataset("ml-100k", tmp_path)
    assert ds.user_ids == ["3", "7"]
    assert ds.item_titles == ["Café Society (1994)", "unknown"]
    assert ds.item_texts[0] == "Café Society (1994). Genres: Action, Comedy."
    assert ds.item_attributes == [["Action", "Comedy", "1990s"], []]  # no date, no decade
    # the exact duplicate row is dropped; user 7's items come back in time order
    assert ds.interactions.values.tolist() == [[0, 0, 300, 3.0], [1, 0, 100, 5.0], [1, 1, 200, 4.0]]


def test_ml100k_wrong_column_count_names_the_file(tmp_path: Path) -> None:
    write_ml100k(tmp_path / "ml-100k")
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\n")
    with pytest.raises(DatasetError, match=r"u\.data: found 3 columns, not 4"):
        load_dataset("ml-100k", tmp_path)


def test_recbole_sequences_repeats_and_items_without_text(tmp_path: Path) -> None:
    folder = tmp_path / "amazon-scientific"
    folder.mkdir()
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    (folder / "Scientific.test.inter").write_text(header + "0\t0 1 0\t2\n1\t\t1\n")
    (folder / "Scientific.item2index").write_text("ASIN1\t1\nASIN0\t0\nASIN2\t2\n")
    (folder / "Scientific.text").write_text(
        "item_id:token\ttext:token_seq\n"
        'ASIN0\tAcme 3/4" Wrench. Industrial & Scientific Tools Wrenches. Acme. \n'
        "ASIN1\tPlain Thing v. 2. . NoCat Inc. \n"
        "ASIN9\tNot in the index. Industrial & Scientific Tools. Other. \n"
    )
    ds = load_dataset("amazon-scientific", tmp_path)
    assert ds.item_ids == ["0", "1", "2"]
    assert ds.item_titles == ['Acme 3/4" Wrench', "Plain Thing v. 2", "item 2"]
    assert ds.item_texts[0] == 'Acme 3/4" Wrench. Industrial & Scientific > Tools Wrenches. Acme.'
    assert ds.item_attributes[0] == ["Tools Wrenches", "Acme"]
    assert ds.item_attributes[1] == ["NoCat Inc"]
    # user 0 bought item 0 twice: only the first (position 0) is kept
    rows = ds.interactions[ds.interactions["user"] == 0]
    assert rows[["item", "ts"]].values.tolist() == [[0, 0], [1, 1], [2, 3]]
    assert ds.interactions[ds.interactions["user"] == 1]["item"].tolist() == [1]


def test_recbole_missing_header_column(tmp_path: Path) -> None:
    folder = tmp_path / "amazon-games"
    folder.mkdir()
    (folder / "Games.test.inter").write_text("user\titems\n0\t1 2\n")
    with pytest.raises(DatasetError, match=r"Games\.test\.inter: missing column"):
        load_dataset("amazon-games", tmp_path)


# -------------------------------------------------------------------------- generic format


def write_generic(folder: Path, interactions: str, items: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interactions.csv").write_text(interactions, encoding="utf-8")
    (folder / "items.csv").write_text(items, encoding="utf-8")
    return folder


GOOD_ITEMS = (
    "item_id,title,description,genres,director\n"
    'm1,Heat,A heist film,Crime|Thriller,"Mann, M."\n'
    "m2,Amélie,,Comedy,\n"
    "m3,Unwatched,Nobody saw it.,,\n"
)


def test_generic_happy_path(tmp_path: Path) -> None:
    folder = write_generic(
        tmp_path / "my-data",
        "user_id,item_id,timestamp,rating\n"
        "bob,m2,20,4\n"
        "alice,m1,10,\n"
        "bob,m1,5,3\n"
        "bob,m1,30,1\n"  # repeated pair: dropped, the earlier (ts 5) stays
        "bob,m2,20,4\n",  # exact duplicate: dropped
        GOOD_ITEMS,
    )
    ds = load_dataset(str(folder))
    assert ds.name == "my-data" and ds.has_clock
    assert ds.user_ids == ["bob", "alice"]  # non-numeric ids: first appearance
    assert ds.item_ids == ["m1", "m2", "m3"]  # catalog order, unseen items kept
    assert ds.item_texts[0] == "Heat. A heist film. genres: Crime, Thriller. director: Mann, M."
    assert ds.item_texts[1] == "Amélie. genres: Comedy."
    assert ds.item_attributes == [["Crime", "Thriller"], ["Comedy"], []]
    table = ds.interactions
    assert table[["user", "item", "ts"]].values.tolist() == [[0, 0, 5], [0, 1, 20], [1, 0, 10]]
    assert table["rating"].tolist()[:2] == [3.0, 4.0] and np.isnan(table["rating"].iat[2])


def test_generic_ties_keep_file_order(tmp_path: Path) -> None:
    folder = write_generic(
        tmp_path / "ties",
        "user_id,item_id,timestamp\n10,m3,7\n10,m1,7\n2,m2,7\n",
        GOOD_ITEMS,
    )
    ds = load_dataset(str(folder))
    assert ds.user_ids == ["2", "10"]  # integer ids: numeric order
    assert ds.interactions["item"].tolist() == [1, 2, 0]


BAD_INTERACTIONS = [
    ("user_id,item_id\nu,m1\n", "interactions.csv", "missing column(s) timestamp"),
    ("", "interactions.csv", "is empty"),
    ("user_id,item_id,timestamp\n", "interactions.csv", "no data rows"),
    ("user_id,item_id,timestamp\nu,m1,2020-01-01\n", "interactions.csv", "expected integers"),
    ("user_id,item_id,timestamp\nu,m1,1.5\n", "interactions.csv", "line 2: '1.5'"),
    ("user_id,item_id,timestamp,rating\nu,m1,1,good\n", "interactions.csv", "expected numbers"),
    ("user_id,item_id,timestamp\n,m1,1\n", "interactions.csv", "non-empty"),
    ("user_id,item_id,timestamp\nu,m9,1\nu,m8,2\n", "not listed in items.csv", "'m9', 'm8'"),
]


@pytest.mark.parametrize(("interactions", "where", "what"), BAD_INTERACTIONS)
def test_generic_bad_interactions(tmp_path: Path, interactions: str, where: str, what: str) -> None:
    folder = write_generic(tmp_path / "bad", interactions, GOOD_ITEMS)
    with pytest.raises(DatasetError) as err:
        load_dataset(str(folder))
    assert where in str(err.value) and what in str(err.value)


BAD_ITEMS = [
    ("item_id,name\nm1,Heat\n", "missing column(s) title"),
    ("item_id,title\nm1,Heat\nm1,Heat again\n", "repeated: 'm1'"),
]


@pytest.mark.parametrize(("items", "what"), BAD_ITEMS)
def test_generic_bad_items(tmp_path: Path, items: str, what: str) -> None:
    folder = write_generic(tmp_path / "bad", "user_id,item_id,timestamp\nu,m1,1\n", items)
    with pytest.raises(DatasetError) as err:
        load_dataset(str(folder))
    assert "items.csv" in str(err.value) and what in str(err.value)


def test_generic_non_utf8_is_reported(tmp_path: Path) -> None:
    folder = write_generic(tmp_path / "latin", "user_id,item_id,timestamp\nu,m1,1\n", "")
    (folder / "items.csv").write_bytes("item_id,title\nm1,Café\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"items\.csv is not valid utf-8 text.*save it as UTF-8"):
        load_dataset(str(folder))


def test_generic_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\nu,m1,1\n")
    with pytest.raises(DatasetError, match=r"missing file .*items\.csv; expected a CSV"):
        load_dataset(str(folder))


def test_interactions_frame_is_never_a_pandas_object_dtype(tmp_path: Path) -> None:
    folder = write_generic(tmp_path / "d", "user_id,item_id,timestamp\nu,m1,1\n", GOOD_ITEMS)
    dtypes = load_dataset(str(folder)).interactions.dtypes
    assert dtypes.to_dict() == {
        "user": np.dtype("int64"),
        "item": np.dtype("int64"),
        "ts": np.dtype("int64"),
        "rating": np.dtype("float64"),
    }
    assert isinstance(load_dataset(str(folder)).interactions, pd.DataFrame)


# ---------------------------------------------------------------------------------- paths


def test_data_dir_and_home_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEMREC_DATA_DIR", raising=False)
    monkeypatch.delenv("MEMREC_HOME", raising=False)
    assert resolve_data_dir() == Path("data") and resolve_home() == Path(".memrec")
    monkeypatch.setenv("MEMREC_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("MEMREC_HOME", str(tmp_path / "env-home"))
    assert resolve_data_dir() == tmp_path / "env-data"
    assert resolve_home() == tmp_path / "env-home"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_home(str(tmp_path / "h")) == tmp_path / "h"


def test_store_dir_names(tmp_path: Path) -> None:
    assert store_dir("ml-100k", tmp_path) == tmp_path / "stores" / "ml-100k"
    first, second = tmp_path / "a" / "data", tmp_path / "b" / "data"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    one, two = store_dir(str(first), tmp_path), store_dir(str(second), tmp_path)
    assert one.parent == tmp_path / "stores" and one.name.startswith("data-")
    assert one != two
    assert store_dir(str(first), tmp_path) == one  # stable
    assert store_dir("we ird/../name", tmp_path).name.startswith("name-")


def test_catalog_snapshots_of_the_old_layout_still_load(tmp_path: Path) -> None:
    """Older stores pickled the classes as memory_store.datasets / evaluation.protocol."""
    import pickle

    from dataio.split import split_leave_one_out
    from memory_store.catalog import load_catalog, save_catalog

    folder = Path(__file__).resolve().parent / "data" / "tiny-movies"
    ds = load_dataset(str(folder))
    split = split_leave_one_out(ds)
    old = pickle.dumps((ds, split), protocol=0)  # text opcodes: module paths are plain lines
    old = old.replace(b"cdataio.dataset\nDataset\n", b"cmemory_store.datasets\nDataset\n")
    old = old.replace(b"cdataio.split\nSplit\n", b"cevaluation.protocol\nSplit\n")
    assert b"memory_store.datasets" in old and b"evaluation.protocol" in old
    (tmp_path / "catalog.pkl").write_bytes(old)
    loaded, loaded_split = load_catalog(tmp_path)
    assert loaded.item_ids == ds.item_ids and loaded.user_ids == ds.user_ids
    assert loaded_split.test.equals(split.test)
    save_catalog(tmp_path, loaded, loaded_split)  # and a re-save writes the current layout
    assert b"memory_store.datasets" not in (tmp_path / "catalog.pkl").read_bytes()
