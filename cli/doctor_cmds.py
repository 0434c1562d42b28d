"""`memrec doctor` and `memrec privacy opt-out|opt-in|delete-user`.

``doctor`` prints what the store holds and every inconsistency between the graph, the memories
and the event log (exit status 1 when there is one); ``privacy`` records a user's choices.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from cli.options import DATASET, HOME, user_errors

if TYPE_CHECKING:
    from memory_store.workspace import Workspace

console = Console(width=140)
MAX_ID_CHARS = 128
_ID = re.compile(r"^[\w.:@-]+$")

UserOpt = typer.Option(..., "--user", help="the user id")
JsonOpt = typer.Option(False, "--json", help="print the report as JSON")

privacy_app = typer.Typer(
    help="A user's privacy choices: opt out of serving as a neighbour, delete."
)


def validate_user_id(user_id: str) -> str:
    """A user id from the command line: 1-128 characters of letters, digits and ``._:@-``."""
    user_id = user_id.strip()
    if not user_id or len(user_id) > MAX_ID_CHARS or not _ID.match(user_id):
        raise ValueError(
            f"--user {user_id[:40]!r} is not a valid user id: 1 to {MAX_ID_CHARS} letters, "
            "digits or . _ : @ -"
        )
    return user_id


def _open(dataset: str, home: str | None) -> Workspace:
    from memory_store.workspace import open_workspace

    return open_workspace(dataset, home=home)


def doctor(dataset: str = DATASET, home: str | None = HOME, as_json: bool = JsonOpt) -> None:
    """Check that graph, memories and event log agree; exit 1 when they do not."""
    from services.doctor import check_workspace

    with user_errors(ValueError):
        ws = _open(dataset, home)
    try:
        report = check_workspace(ws)
    finally:
        ws.events.close()
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        table = Table("count", "value", title=f"memrec doctor: {report.dataset}")
        for key, value in sorted(report.counts.items()):
            table.add_row(key, str(value))
        console.print(table)
        for problem in report.problems:
            console.print(f"[red]{problem.code}[/red]: {problem.detail}", highlight=False)
        console.print("[green]consistent[/green]" if report.ok else "[red]inconsistent[/red]")
    if not report.ok:
        raise typer.Exit(1)


def _privacy(dataset: str, home: str | None, user: str, action: str) -> None:
    from services.privacy import delete_user, set_opt_out

    with user_errors(ValueError):
        user = validate_user_id(user)
        ws = _open(dataset, home)
        try:
            if action == "delete":
                typer.echo(json.dumps(delete_user(ws, user).model_dump(), indent=2))
            else:
                set_opt_out(ws, user, action == "opt-out")
                typer.echo(f"user {user}: {action} recorded")
        finally:
            ws.events.close()


@privacy_app.command("opt-out")
def opt_out(dataset: str = DATASET, home: str | None = HOME, user: str = UserOpt) -> None:
    """Stop serving as a neighbour: never curated for, never patched by other users."""
    _privacy(dataset, home, user, "opt-out")


@privacy_app.command("opt-in")
def opt_in(dataset: str = DATASET, home: str | None = HOME, user: str = UserOpt) -> None:
    """Serve as a neighbour again."""
    _privacy(dataset, home, user, "opt-in")


@privacy_app.command("delete-user")
def delete_user_cmd(dataset: str = DATASET, home: str | None = HOME, user: str = UserOpt) -> None:
    """Delete a user's memory and interactions, and revert the patches they caused."""
    _privacy(dataset, home, user, "delete")


def register(app: typer.Typer) -> None:
    """Add `doctor` and the `privacy` group to the `memrec` app."""
    app.command("doctor")(doctor)
    app.add_typer(privacy_app, name="privacy")
