"""Options shared by the commands, the run-context builder and clear error reporting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from schemas.context import MemRecContext

USER = typer.Option(None, "--user", help="a user id")
ITEM = typer.Option(None, "--item", help="an item id")
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
    from dataio.candidates import ProtocolError
    from dataio.datasets import DatasetError
    from dataio.files import StoreWriteError
    from memory_store.events import ReadOnlyLog, SchemaMismatch, StoreBusy
    from memory_store.manifest import DamagedStore
    from memory_store.workspace import NotIndexed, UnknownEntity
    from memory_store.writer_lock import StoreLocked
    from memory_store.writes import UnknownMemory, UnknownVersion
    from nodes.curate import InvalidRequest
    from roles.models import ModelConfigError

    return (
        CliError,
        DatasetError,
        ProtocolError,
        NotIndexed,
        UnknownEntity,
        UnknownMemory,
        UnknownVersion,
        SchemaMismatch,
        InvalidRequest,
        ModelConfigError,
        StoreLocked,  # another process writes the store: names it
        StoreBusy,  # SQLite stayed locked past the wait
        StoreWriteError,  # a full disk: names the file, nothing changed
        DamagedStore,  # names the file and the repair command
        ReadOnlyLog,
    )


@contextmanager
def user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Errors a user can fix from the message: one line on stderr and exit status 2.

    ``extra`` adds a command's own expected errors (e.g. ValueError for bad option values).
    """
    try:
        yield
    except (*_expected_errors(), *extra) as err:
        _err.print(f"[red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def run_cli(fn: Callable[[], None]) -> None:
    """Run a command body under :func:`user_errors`."""
    with user_errors():
        fn()
