"""The scripted demo conversations (tests/demo_chat.py): each turn answers what was asked.

The tiny film catalogue runs in the unit lane; ml-100k and amazon-scientific in the slow lane
(amazon-games, 50k users, takes minutes to index: run its script with
``python -m tests.demo_chat --dataset amazon-games``).
"""

# ruff: noqa: F811

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from tests.demo_chat import SCRIPTS, run_script
from tests.support.fixtures import workspace_fixtures
from tests.support.tiny_films import write_tiny_films

TINY = str(write_tiny_films(Path(tempfile.mkdtemp(prefix="memrec-demo-")) / "tiny-films"))
ws, ctx = workspace_fixtures(TINY)
ml_ws, ml_ctx = workspace_fixtures("ml-100k")
sci_ws, sci_ctx = workspace_fixtures("amazon-scientific")


def picks(reply: str) -> list[str]:
    return re.findall(r"^\d+\. (.+?) - ", reply, flags=re.M)


async def test_the_tiny_film_script(ws, ctx) -> None:
    turns = dict(await run_script(ctx, SCRIPTS["tiny-films"]))
    first = turns["I loved Heat and Fargo, two dramas please"]
    assert "Noted: you loved Heat (1995)." in first and "Noted: you loved Fargo (1996)." in first
    assert "Here are my picks (Drama):" in first and len(picks(first)) == 2
    assert "up to" in turns["something older"]
    left_out = picks(turns["something older"])[0]
    assert f"OK, I left out {left_out}" in turns["not that one"]
    assert left_out not in picks(turns["not that one"])
    assert "Several titles match 'Sabrina'" in turns["I loved Sabrina"]
    assert "Sabrina (1954)" in turns["1"]
    assert turns["a comedy, no horror"].startswith("Here are my picks (Comedy, no Horror):")


@pytest.mark.slow
async def test_the_ml_100k_script(ml_ws, ml_ctx) -> None:
    turns = dict(await run_script(ml_ctx, SCRIPTS["ml-100k"]))
    first = turns["Hi! I loved Star Wars and Alien, recommend three sci-fi movies"]
    assert "Star Wars (1977)" in first and "Alien (1979)" in first  # two titles, both read
    assert len(picks(first)) == 3
    older = picks(turns["something older"])
    assert older and "up to" in turns["something older"]
    assert older[0] not in picks(turns["not that one"])
    assert not set(picks(turns["something else"])) & set(picks(turns["not that one"]))
    assert "Noted: you did not like" in turns["I did not like #2"]
    last = turns["a 90s comedy, no horror"]
    assert last.startswith("Here are my picks (Comedy, 1990s, no Horror)")


@pytest.mark.slow
async def test_the_amazon_scientific_script(sci_ws, sci_ctx) -> None:
    turns = dict(await run_script(sci_ctx, SCRIPTS["amazon-scientific"]))
    calipers = picks(turns["I need a digital caliper"])
    assert calipers and all("Caliper" in p for p in calipers)
    assert "Did you mean" in turns["I loved the Neiko 01409A Electronic Digital Caliper"]
    filaments = turns["something like the HATCHBOX PLA 3D Printer Filament, three of them"]
    assert len(picks(filaments)) == 3
    last = turns["thermometers, no Etekcity"]
    assert last.startswith("Here are my picks (Thermometers, no Etekcity):")
    assert not any("Etekcity" in p for p in picks(last))
