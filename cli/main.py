"""The `memrec` command: data, index, rules, recommend, feedback, memory, eval, chat, serve."""

from __future__ import annotations

import logging

import typer

from cli import bench_cmds, chat_cmds, core, doctor_cmds, eval_cmds, propagation_cmds

app = typer.Typer(
    name="memrec",
    help="MemRec: collaborative memory-augmented agentic recommendation on LangGraph.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for module in (core, propagation_cmds, eval_cmds, chat_cmds, bench_cmds, doctor_cmds):
    module.register(app)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    """MemRec command line."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
