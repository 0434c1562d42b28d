"""`memrec eval` and `memrec report`: run the benchmark and combine runs into a report."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown

from evaluation.methods import METHODS
from evaluation.runner import CANDIDATE_COUNTS, LeakageError
from memory_store.workspace import NotIndexed

_console = Console()
_errors = Console(stderr=True)
# Errors a user can fix from the message: bad names, foreign or old files, missing index or data.
_USER_ERRORS = (ValueError, LookupError, NotIndexed, LeakageError, OSError)


def _print_table(table: str) -> None:
    """Rendered on a terminal; plain Markdown otherwise (pipes and logs keep every digit)."""
    if _console.is_terminal:
        _console.print(Markdown(table))
    else:
        _console.print(table, markup=False, highlight=False, soft_wrap=True)


def _fail(exc: BaseException) -> typer.Exit:
    _errors.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
    return typer.Exit(2)


def eval_command(
    dataset: Annotated[str, typer.Option(help="dataset name or generic-format folder")],
    method: Annotated[
        str, typer.Option(help=f"one of {', '.join(METHODS)}, or 'all' for every method")
    ],
    roles: Annotated[str, typer.Option(help="role preset of the agentic methods")] = "offline",
    users: Annotated[
        int | None,
        typer.Option(help="seeded user sample (default: all offline, 1000 with LLM roles)"),
    ] = None,
    candidates: Annotated[int, typer.Option(help="candidates per user: 10 or 20")] = 10,
    concurrency: Annotated[int, typer.Option(help="requests in flight")] = 8,
    k: Annotated[int | None, typer.Option("--k", help="override the neighbour count k")] = None,
    out: Annotated[Path, typer.Option(help="results folder")] = Path("results"),
    home: Annotated[str | None, typer.Option(help="MemRec home (default MEMREC_HOME)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="where the datasets are")] = None,
    candidates_file: Annotated[
        Path | None, typer.Option(help="explicit test candidate file (must match the dataset)")
    ] = None,
) -> None:
    """Evaluate one method (or all) under the benchmark protocol; prints the results table."""
    from evaluation.report import markdown_table
    from evaluation.runner import run_eval

    if candidates not in CANDIDATE_COUNTS:
        raise _fail(ValueError(f"--candidates must be one of {CANDIDATE_COUNTS}, not {candidates}"))
    names = list(METHODS) if method == "all" else [method]
    results = []
    try:
        for name in names:
            results.append(
                asyncio.run(
                    run_eval(
                        dataset,
                        name,
                        roles=roles,
                        users=users,
                        candidates=candidates,
                        concurrency=concurrency,
                        out_dir=out,
                        k=k,
                        home=home,
                        data_dir=data_dir,
                        candidates_file=candidates_file,
                        progress=True,
                    )
                )
            )
    except _USER_ERRORS as exc:
        raise _fail(exc) from exc
    _print_table(markdown_table(results))
    for result in results:
        _console.print(f"{result.run}: wall {result.wall_s:.1f} s -> {out / result.run}.json")


def report_command(
    dirs: Annotated[list[Path], typer.Argument(help="results folders written by `memrec eval`")],
) -> None:
    """Combine every run in DIR... into report.md and PNG plots (written into the first DIR)."""
    from evaluation.report import build_report

    try:
        report = build_report(dirs)
    except _USER_ERRORS as exc:
        raise _fail(exc) from exc
    _print_table(report.table)
    _console.print(f"wrote {report.markdown_path} and {len(report.plots)} plots")


def register(app: typer.Typer) -> None:
    """Add the eval and report commands to the `memrec` app."""
    app.command("eval")(eval_command)
    app.command("report")(report_command)
