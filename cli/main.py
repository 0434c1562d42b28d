"""The `memrec` command: data, index, rules, recommend, feedback, memory, eval, chat, serve."""

from __future__ import annotations

import logging

import typer

from cli import core

app = typer.Typer(
    name="memrec",
    help="MemRec: collaborative memory-augmented agentic recommendation on LangGraph.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
core.register(app)


def _register_optional() -> None:
    """Sub-command modules register themselves here (each owns its commands)."""
    import importlib

    for name in ("cli.propagation_cmds", "cli.eval_cmds", "cli.chat_cmds", "cli.bench_cmds"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(app)


_register_optional()


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    """MemRec command line."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
