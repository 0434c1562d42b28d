"""`memrec chat` (a terminal conversation that survives restarts) and `memrec serve`."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.text import Text

from cli.options import DATASET, HOME, ROLES, CliError, context, model_options, run_cli
from schemas.context import MemRecContext
from services.event_loop import run as run_async

REPO = Path(__file__).resolve().parents[1]
QUIT = ("/quit", "/exit")
console = Console(highlight=False)
CONFIG = typer.Option(REPO / "langgraph.json", "--config", help="the langgraph.json to serve")


def default_thread(dataset: str, user: str) -> str:
    """One thread per (dataset, user) unless the caller names one."""
    return f"{dataset}:{user}"


async def chat_loop(
    ctx: MemRecContext, user: str, thread: str, lines: TextIO, out: Console = console
) -> int:
    """Read messages from ``lines`` until EOF or /quit; print each reply. Returns turns served."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from graph.chat import build_chat_graph, checkpoint_serde
    from memory_store.workspace import workspace_for

    ws = await asyncio.to_thread(workspace_for, ctx)
    conn = await aiosqlite.connect(str(ws.directory / "chat.sqlite"))
    turns = 0
    try:
        graph = build_chat_graph().compile(
            checkpointer=AsyncSqliteSaver(conn, serde=checkpoint_serde())
        )
        out.print(
            Text(f"MemRec chat on {ws.name} as user {user} (thread {thread}); /quit to leave.")
        )
        while True:
            line = await asyncio.to_thread(lines.readline)
            if not line or line.strip() in QUIT:
                break
            await _turn(graph, ctx, user, thread, line.strip(), out)
            turns += 1
    finally:
        await _settle_propagation(ctx)
        await conn.close()
    return turns


async def _turn(
    graph: Any, ctx: MemRecContext, user: str, thread: str, message: str, out: Console
) -> None:
    """One turn: tokens of the reply are printed as they stream."""
    from langchain_core.messages import AIMessage, AIMessageChunk

    config = {"configurable": {"thread_id": thread}}
    inp = {"messages": [{"role": "user", "content": message}], "user_id": user}
    out.print(Text("memrec> ", style="bold cyan"), end="")
    streamed = False
    async for chunk, meta in graph.astream(inp, config, context=ctx, stream_mode="messages"):
        if meta.get("langgraph_node") != "respond":
            continue
        if isinstance(chunk, AIMessageChunk):
            out.print(Text(str(chunk.content)), end="")
            streamed = True
        elif isinstance(chunk, AIMessage) and not streamed:
            out.print(Text(str(chunk.content)), end="")
    out.print()


async def _settle_propagation(ctx: MemRecContext) -> None:
    """Give the in-process propagation worker a bounded moment to finish, then stop it."""
    from graph.background import stop_shared_workers

    await stop_shared_workers(timeout_s=10.0)


@model_options
def chat(
    user: str = typer.Option(..., "--user", help="user id (a new id starts a cold-start chat)"),
    dataset: str = DATASET,
    thread: str | None = typer.Option(
        None, "--thread", help="conversation id (default <dataset>:<user>)"
    ),
    home: str | None = HOME,
    roles: str | None = ROLES,
) -> None:
    """Chat for recommendations; the conversation is kept in the store and survives restarts."""

    def go() -> None:
        ctx = context(dataset, home, roles)
        run_async(chat_loop(ctx, user, thread or default_thread(dataset, user), sys.stdin))

    run_cli(go)


def langgraph_executable() -> str:
    """The `langgraph` CLI of this environment."""
    local = Path(sys.executable).with_name("langgraph")
    found = str(local) if local.exists() else shutil.which("langgraph")
    if not found:
        raise CliError("the `langgraph` command is missing: install langgraph-cli[inmem]")
    return found


def serve_command(
    port: int, config: Path, *, allow_blocking: bool = False, host: str = "127.0.0.1"
) -> list[str]:
    """The `langgraph dev` command line serving this project's graphs (on 127.0.0.1 by default)."""
    cmd = [
        langgraph_executable(),
        "dev",
        "--host",
        host,
        "--port",
        str(port),
        "--no-browser",
        "--config",
        str(config),
    ]
    return [*cmd, "--allow-blocking"] if allow_blocking else cmd


def serve(
    port: int = typer.Option(2024, "--port", help="port to serve on"),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="address to bind; anything but loopback needs a token table"
    ),
    config: Path = CONFIG,
    allow_blocking: bool = typer.Option(
        False, "--allow-blocking", help="tolerate blocking calls in async nodes (custom code)"
    ),
) -> None:
    """Run the LangGraph dev server (Studio, the SDK, MCP at /mcp) with every MemRec graph.

    Auth follows the environment (MEMREC_AUTH_TOKENS, or MEMREC_AUTH=off on loopback only); an
    unsafe or malformed setting stops here, before the server starts.
    """
    from services.auth_policy import PolicyError, check_server_policy

    def go() -> None:
        if not config.exists():
            raise CliError(f"--config {config}: no such file (expected a langgraph.json)")
        try:
            check_server_policy(host=host)
        except PolicyError as err:
            raise CliError(str(err)) from err
        from memory_store.malloc_hygiene import server_env

        cmd = serve_command(port, config.resolve(), allow_blocking=allow_blocking, host=host)
        env = server_env()  # glibc malloc arenas capped from the start: a flat RSS
        raise typer.Exit(subprocess.call(cmd, cwd=config.resolve().parent, env=env))

    run_cli(go)


def register(app: typer.Typer) -> None:
    """Add `chat` and `serve` to the app."""
    app.command("chat")(chat)
    app.command("serve")(serve)
