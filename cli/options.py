"""Options shared by the commands, the run-context builder and clear error reporting."""

from __future__ import annotations

from collections.abc import Callable

import typer
from rich.console import Console

from graph.context import MemRecContext

DATASET = typer.Option(
    "ml-100k",
    "--dataset",
    "-d",
    help="known name (ml-100k, amazon-scientific, amazon-games) or a folder in the generic format",
)
DATA_DIR = typer.Option(
    None, "--data-dir", help="where datasets live (env MEMREC_DATA_DIR, default ./data)"
)
HOME = typer.Option(None, "--home", help="store location (env MEMREC_HOME, default ./.memrec)")
ROLES = typer.Option(
    None, "--roles", help="role preset: offline, standard, cloud-oss, local-qwen, ceiling"
)

_err = Console(stderr=True)


class CliError(RuntimeError):
    """A command-line usage error with a message for the user."""


def context(dataset: str, home: str | None, roles: str | None, **extra: object) -> MemRecContext:
    """The run context for a command."""
    return MemRecContext.from_mapping({"dataset": dataset, "home": home, "roles": roles, **extra})


def _expected_errors() -> tuple[type[BaseException], ...]:
    from evaluation.protocol import ProtocolError
    from memory_store.datasets import DatasetError
    from memory_store.workspace import NotIndexed, UnknownEntity
    from nodes.curate import InvalidRequest
    from nodes.models import ModelConfigError

    return (
        CliError,
        DatasetError,
        ProtocolError,
        NotIndexed,
        UnknownEntity,
        InvalidRequest,
        ModelConfigError,
    )


def run_cli(fn: Callable[[], None]) -> None:
    """Run a command body; expected errors print one clear line and exit with status 2."""
    try:
        fn()
    except _expected_errors() as err:
        _err.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
