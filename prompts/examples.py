"""Rendered examples of every prompt, as a model reads them: ``prompts/examples/*.txt``.

Regenerate with ``uv run python -m prompts.examples`` after changing a template;
``tests/test_prompts.py`` checks the committed files match what the templates render now.
"""

from __future__ import annotations

import sys
from pathlib import Path

from langchain_core.messages import BaseMessage

from prompts import profile, propagation, ranking, rules, synthesis
from schemas.records import (
    CandidateItem,
    Facet,
    InteractionEvent,
    NeighbourSnippet,
    ProfileInput,
    PropagationInput,
    RankingInput,
    SynthesisInput,
)
from schemas.ruleset import DomainStats

FOLDER = Path(__file__).resolve().parent / "examples"

USER_MEMORY = (
    "Interacted with 58 items. Returns to: Drama (41%), Comedy (29%), Romance (17%). Recently: "
    "Sense and Sensibility (1995); Emma (1996); Top Hat (1935). Note: Users like you recently "
    "chose item:1203."
)
NEIGHBOURS = [
    NeighbourSnippet(
        ref="user:92",
        kind="user",
        text="Interacted with 388 items. Returns to: Drama (44%), Comedy (30%). Recently: "
        "Casablanca (1942); Roman Holiday (1953).",
        score=2.41,
    ),
    NeighbourSnippet(
        ref="item:275",
        kind="item",
        title="Sense and Sensibility (1995)",
        text="Sense and Sensibility (1995). Genres: Drama, Romance. Note: Recently chosen by "
        "users who favour Drama, Romance.",
        score=1.87,
    ),
    NeighbourSnippet(
        ref="user:457",
        kind="user",
        text="Interacted with 121 items. Returns to: Musical (12%), Comedy (35%). Recently: "
        "Singin' in the Rain (1952).",
        score=1.12,
    ),
]
FACETS = [
    Facet(
        name="classic romance",
        description="Period and golden-age romances; 2 of 3 neighbours point to it.",
        confidence=0.82,
        evidence=["user:92", "item:275"],
    ),
    Facet(
        name="Musical",
        description="Song-and-dance films of the 1930s-50s.",
        confidence=0.55,
        evidence=["user:457"],
    ),
]
CANDIDATES = [
    CandidateItem(
        item_id="1203",
        title="Top Hat (1935)",
        memory="Genres: Comedy, Musical, Romance. Note: Recently chosen by users who favour "
        "Musical, Romance.",
    ),
    CandidateItem(
        item_id="919",
        title="City of Lost Children, The (1995)",
        memory="Genres: Adventure, Sci-Fi.",
    ),
    CandidateItem(item_id="1668", title="Wedding Bell Blues (1996)", memory="Genres: Comedy."),
]
STATS = DomainStats(
    dataset="ml-100k",
    n_users=943,
    n_items=1682,
    n_interactions=98114,
    density=0.0619,
    user_degree_median=63,
    user_degree_p90=244,
    item_degree_median=26,
    item_degree_p90=176,
    co_count_median=3,
    co_count_p90=19,
    recency_spread_days=14.2,
    has_clock=True,
    text_tokens_mean=9.1,
    attributes_per_item=1.7,
    feature_ranges={
        "user": {
            "co_count": [2.0, 9.0, 31.0],
            "co_share": [0.02, 0.1, 0.33],
            "overlap": [0.01, 0.05, 0.14],
            "degree": [3.6, 4.6, 5.5],
            "degree_share": [0.05, 0.13, 0.34],
            "recency": [0.6, 0.91, 1.0],
            "inactive_days": [0.0, 17.0, 92.0],
            "text_overlap": [0.72, 0.89, 0.96],
            "memory_sim": [0.41, 0.58, 0.73],
        },
        "item": {
            "co_count": [120.0, 410.0, 1020.0],
            "co_share": [2.1, 7.0, 16.9],
            "overlap": [0.04, 0.09, 0.16],
            "degree": [3.5, 4.9, 5.9],
            "degree_share": [0.04, 0.23, 0.6],
            "recency": [0.97, 1.0, 1.0],
            "inactive_days": [0.0, 0.0, 6.0],
            "text_overlap": [0.21, 0.53, 0.8],
            "memory_sim": [0.08, 0.16, 0.27],
        },
    },
)


def example_inputs() -> dict[str, tuple[object, object]]:
    """File stem -> (prompt module, input) of every example."""
    return {
        "rank-ml-100k": (
            ranking,
            RankingInput(
                user_id="1",
                dataset="ml-100k",
                user_memory=USER_MEMORY,
                facets=FACETS,
                candidates=CANDIDATES,
                request="something light for a Sunday afternoon",
                curated=[n.model_copy(update={"text": ""}) for n in NEIGHBOURS],
            ),
        ),
        "rank-vanilla-amazon-scientific": (
            ranking,
            RankingInput(
                user_id="A2XK",
                dataset="amazon-scientific",
                user_memory="",
                candidates=[
                    CandidateItem(
                        item_id="B00K",
                        title="Digital caliper, 6 inch",
                        text="Stainless steel, LCD display, inch and metric.",
                    ),
                    CandidateItem(
                        item_id="B01F", title="Nitrile gloves, 100 pack", text="Powder free."
                    ),
                ],
                history_titles=["Safety glasses", "Lab notebook, 100 pages"],
            ),
        ),
        "synthesize-ml-100k": (
            synthesis,
            SynthesisInput(
                user_id="1",
                dataset="ml-100k",
                user_memory=USER_MEMORY,
                neighbours=NEIGHBOURS,
                max_facets=7,
            ),
        ),
        "propagate-ml-100k": (
            propagation,
            PropagationInput(
                event=InteractionEvent(
                    interaction_id="5f0c9e", user_id="1", item_id="1203", kind="positive", ts=8.9e8
                ),
                item_title="Top Hat (1935)",
                user_memory=USER_MEMORY,
                item_memory="Top Hat (1935). Genres: Comedy, Musical, Romance.",
                neighbours=NEIGHBOURS,
                facets=FACETS,
                when="1998-03-16",
                dataset="ml-100k",
            ),
        ),
        "rules-ml-100k": (rules, STATS),
        "profile": (
            profile,
            ProfileInput(
                user_id="1", titles=["Toy Story (1995)", "GoldenEye (1995)"], attributes=["Comedy"]
            ),
        ),
    }


def as_text(messages: list[BaseMessage]) -> str:
    """The messages as a model reads them, each under a role header."""
    return "\n\n".join(f"===== {m.type} =====\n{m.text}" for m in messages) + "\n"


def render_examples() -> dict[str, str]:
    """File name -> rendered text of every example."""
    return {
        f"{stem}.txt": as_text(module.render(inp))  # type: ignore[attr-defined]
        for stem, (module, inp) in example_inputs().items()
    }


def main() -> None:
    """Write every example into ``prompts/examples``."""
    FOLDER.mkdir(exist_ok=True)
    for name, text in render_examples().items():
        (FOLDER / name).write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {len(render_examples())} examples to {FOLDER}\n")


if __name__ == "__main__":
    main()
