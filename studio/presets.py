"""Assistant presets (offline, standard, local-qwen) and creating them on a LangGraph server.

The presets live in ``studio/assistants.json``: one assistant per (graph, preset), whose run
context picks the role models. Studio shows and edits that context per assistant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

PRESETS_FILE = Path(__file__).with_name("assistants.json")
logger = logging.getLogger(__name__)


class AssistantPreset(BaseModel):
    """One assistant to create: a graph run with a fixed context."""

    graph_id: str = Field(description="a graph of langgraph.json")
    name: str = Field(description="'<graph>-<preset>', unique on the server")
    description: str
    context: dict[str, Any] = Field(description="MemRecContext fields")


def load_presets(path: Path = PRESETS_FILE) -> list[AssistantPreset]:
    """Every (graph, preset) assistant described by the presets file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        AssistantPreset(
            graph_id=graph_id,
            name=f"{graph_id}-{preset['preset']}",
            description=preset["description"],
            context=preset["context"],
        )
        for graph_id in data["graphs"]
        for preset in data["presets"]
    ]


async def create_assistants(
    client: Any, presets: list[AssistantPreset] | None = None
) -> list[dict[str, Any]]:
    """Create the assistants on a server (``langgraph_sdk`` client); existing names are kept."""
    existing = {a["name"]: a for a in await client.assistants.search(limit=1000)}
    created = []
    for preset in presets if presets is not None else load_presets():
        if preset.name in existing:
            created.append(existing[preset.name])
            continue
        created.append(
            await client.assistants.create(
                preset.graph_id,
                context=preset.context,
                name=preset.name,
                description=preset.description,
                metadata={"preset": preset.name},
            )
        )
    return created


def main(argv: list[str] | None = None) -> None:
    """``python -m studio.presets --url http://127.0.0.1:2024``."""
    from langgraph_sdk import get_client

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:2024", help="LangGraph server URL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    made = asyncio.run(create_assistants(get_client(url=args.url)))
    for assistant in made:
        logger.info("%s -> %s", assistant["name"], assistant["assistant_id"])


if __name__ == "__main__":
    main()
