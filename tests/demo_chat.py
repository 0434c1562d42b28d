"""A scripted multi-turn chat per dataset, runnable as a demo (tests/test_demo_chat.py checks it).

    uv run python -m tests.demo_chat --dataset ml-100k [--home DIR] [--user ID]

Each script exercises what a person does in a conversation: several titles, a count, "something
older", "not that one" (a skip), "something else", a dislike by reference, an ambiguous title
and its answer, "something like X", constraints. Feedback turns write to the store named by
``--home`` (default ``MEMREC_HOME``): run it on a copy you do not mind changing.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from langgraph.checkpoint.memory import InMemorySaver

from graph.background import stop_shared_workers
from graph.chat import build_chat_graph, checkpoint_serde
from schemas.context import MemRecContext


@dataclass(frozen=True)
class Script:
    """A user and what they say, turn by turn."""

    user: str
    turns: tuple[str, ...]


SCRIPTS: dict[str, Script] = {
    "ml-100k": Script(
        "1",
        (
            "Hi! I loved Star Wars and Alien, recommend three sci-fi movies",
            "something older",
            "not that one",
            "something else",
            "I did not like #2",
            "I loved Sabrina",
            "2",
            "a 90s comedy, no horror",
            "something like Fargo",
        ),
    ),
    "amazon-scientific": Script(
        "0",
        (
            "I need a digital caliper",
            "I loved the Neiko 01409A Electronic Digital Caliper",
            "something like the HATCHBOX PLA 3D Printer Filament, three of them",
            "not that one",
            "something else",
            "I did not like #2",
            "thermometers, no Etekcity",
        ),
    ),
    "amazon-games": Script(
        "0",
        (
            "some playstation 4 games",
            "I loved Bloodborne",
            "something like The Last of Us Remastered, two please",
            "not that one",
            "something else",
            "I did not like that one",
            "xbox one controller",
        ),
    ),
    "tiny-films": Script(
        "1",
        (
            "I loved Heat and Fargo, two dramas please",
            "something older",
            "not that one",
            "something else",
            "I loved Sabrina",
            "1",
            "a comedy, no horror",
        ),
    ),
}


async def run_script(ctx: MemRecContext, script: Script) -> list[tuple[str, str]]:
    """Say each turn on one fresh thread; (message, reply) pairs."""
    graph = build_chat_graph().compile(checkpointer=InMemorySaver(serde=checkpoint_serde()))
    config = {"configurable": {"thread_id": f"demo-{script.user}"}}
    out: list[tuple[str, str]] = []
    try:
        for text in script.turns:
            inp = {"messages": [{"role": "user", "content": text}], "user_id": script.user}
            state = await graph.ainvoke(inp, config=config, context=ctx)  # type: ignore[arg-type]
            out.append((text, str(state["messages"][-1].content)))
    finally:
        await stop_shared_workers(timeout_s=20)
    return out


def script_for(dataset: str) -> Script:
    """The script of a dataset (a generic folder uses its folder name)."""
    name = dataset.rstrip("/").rsplit("/", 1)[-1]
    if name not in SCRIPTS:
        raise SystemExit(f"no chat script for {dataset!r}; scripts: {', '.join(SCRIPTS)}")
    return SCRIPTS[name]


def main() -> None:
    """Print the conversation of one dataset's script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--home", default=None, help="store home (default MEMREC_HOME)")
    parser.add_argument("--user", default=None, help="who chats (default: the script's user)")
    args = parser.parse_args()
    script = script_for(args.dataset)
    if args.user:
        script = Script(args.user, script.turns)
    ctx = MemRecContext(dataset=args.dataset, home=args.home, roles="offline")
    for text, reply in asyncio.run(run_script(ctx, script)):
        print(f"user> {text}\nmemrec> {reply}\n")


if __name__ == "__main__":
    main()
