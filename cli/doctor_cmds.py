"""`memrec doctor` and `memrec privacy opt-out|opt-in|delete-user`.

``doctor`` prints what the store holds and every inconsistency between its files, the graph, the
memories and the event log (exit status 1 when there is one); ``--repair`` fixes what can be
fixed, ``--compact`` applies the audit retention policy; ``privacy`` records a user's choices.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from cli.options import DATA_DIR, DATASET, HOME, context, user_errors
from services.event_loop import run as run_async

if TYPE_CHECKING:
    from memory_store.workspace import Workspace
    from services.doctor import DoctorReport

console = Console(width=140)
MAX_ID_CHARS = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

UserOpt = typer.Option(..., "--user", help="the user id, exactly as indexed (quote it)")
JsonOpt = typer.Option(False, "--json", help="print the report as JSON")
ServerOpt = typer.Option(
    None,
    "--server",
    envvar="MEMREC_SERVER_URL",
    help="a running LangGraph server on this store: the action runs there, and a deletion "
    "also deletes the user's threads (env MEMREC_SERVER_URL)",
)
ApiKeyOpt = typer.Option(None, "--api-key", envvar="LANGGRAPH_API_KEY", help="server API key")

privacy_app = typer.Typer(
    help="A user's privacy choices: opt out of serving as a neighbour, delete."
)


def validate_user_id(user_id: str) -> str:
    """A user id from the command line: any id a dataset can hold (spaces and quotes too).

    1 to 256 characters, no control characters; taken as given (not stripped), since ids
    are matched exactly against the catalog.
    """
    if not user_id.strip() or len(user_id) > MAX_ID_CHARS or _CONTROL.search(user_id):
        raise ValueError(
            f"--user {user_id[:40]!r} is not a valid user id: 1 to {MAX_ID_CHARS} characters, "
            "not only spaces, no control characters"
        )
    return user_id


def _open(dataset: str, home: str | None) -> Workspace:
    from memory_store.workspace import open_workspace

    return open_workspace(dataset, home=home)


def doctor(
    dataset: str = DATASET,
    home: str | None = HOME,
    as_json: bool = JsonOpt,
    repair: bool = typer.Option(
        False, "--repair", help="fix what can be fixed (takes the store's writer lock)"
    ),
    compact: bool = typer.Option(
        False,
        "--compact",
        help="apply the audit retention policy (MEMREC_AUDIT_KEEP_VERSIONS / _DAYS) and vacuum",
    ),
    new_event_log: bool = typer.Option(
        False, "--new-event-log", help="with --repair: accept a lost event log, start an empty one"
    ),
    data_dir: str | None = DATA_DIR,
) -> None:
    """Check that files, graph, memories and event log agree; exit 1 when they do not."""
    from memory_store.manifest import DamagedStore
    from memory_store.writer_lock import StoreLocked
    from services import repair as doctor_service

    with user_errors(ValueError, StoreLocked, DamagedStore, OSError):
        ctx = context(dataset, home, "offline")
        if compact:
            sizes = doctor_service.compact(ctx)
            console.print(
                f"audit retention: {sizes['rows_pruned']:.0f} row(s) pruned; event log "
                f"{sizes['bytes_before'] / 1e6:.1f} MB -> {sizes['bytes_after'] / 1e6:.1f} MB"
            )
        if repair:
            result = doctor_service.repair(ctx, data_dir=data_dir, new_event_log=new_event_log)
            for action in result.actions:
                console.print(f"[cyan]repair:[/cyan] {action}", highlight=False)
            if not result.actions:
                console.print("repair: nothing to do")
            report = result.after
        else:
            report = doctor_service.diagnose(dataset, home)
    _print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: DoctorReport, as_json: bool) -> None:
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    table = Table("count", "value", title=f"memrec doctor: {report.dataset}")
    for key, value in sorted(report.counts.items()):
        table.add_row(key, str(value))
    console.print(table)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    for problem in report.problems:
        console.print(f"[red]{problem.code}[/red]: {problem.detail}", highlight=False)
    console.print("[green]consistent[/green]" if report.ok else "[red]inconsistent[/red]")


def _privacy(
    dataset: str,
    home: str | None,
    user: str,
    action: str,
    server: str | None = None,
    api_key: str | None = None,
) -> None:
    """Run a privacy action here, or in the server that holds the store (``--server``)."""
    from memory_store.writer_lock import StoreLocked
    from services.privacy import delete_on_server, delete_user_threads, run_action

    with user_errors(ValueError, LookupError, StoreLocked, OSError):
        user = validate_user_id(user)
        if server:
            context = {"dataset": dataset, **({"home": home} if home else {})}
            report = run_async(
                delete_on_server(server, user, context, action=action, api_key=api_key)
            )
        else:
            ws = _open(dataset, home)
            try:
                report = run_action(ws, user, action)
            finally:
                ws.events.close()
        if action != "delete":
            typer.echo(f"user {user}: {action} recorded")
            return
        if server:
            report["server_threads_deleted"] = run_async(
                delete_user_threads(server, user, api_key=api_key)
            )
        typer.echo(json.dumps(report, indent=2))


@privacy_app.command("opt-out")
def opt_out(
    dataset: str = DATASET,
    home: str | None = HOME,
    user: str = UserOpt,
    server: str | None = ServerOpt,
    api_key: str | None = ApiKeyOpt,
) -> None:
    """Stop serving as a neighbour: never curated for, never patched by other users."""
    _privacy(dataset, home, user, "opt-out", server, api_key)


@privacy_app.command("opt-in")
def opt_in(
    dataset: str = DATASET,
    home: str | None = HOME,
    user: str = UserOpt,
    server: str | None = ServerOpt,
    api_key: str | None = ApiKeyOpt,
) -> None:
    """Serve as a neighbour again."""
    _privacy(dataset, home, user, "opt-in", server, api_key)


@privacy_app.command("delete-user")
def delete_user_cmd(
    dataset: str = DATASET,
    home: str | None = HOME,
    user: str = UserOpt,
    server: str | None = ServerOpt,
    api_key: str | None = ApiKeyOpt,
) -> None:
    """Delete a user everywhere: memory, interactions, the writes they caused, files, threads."""
    _privacy(dataset, home, user, "delete", server, api_key)


def register(app: typer.Typer) -> None:
    """Add `doctor` and the `privacy` group to the `memrec` app."""
    app.command("doctor")(doctor)
    app.add_typer(privacy_app, name="privacy")
