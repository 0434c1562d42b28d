"""Core commands: data, index, rules, recommend, demo."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from cli.options import (
    DATA_DIR,
    DATASET,
    HOME,
    ROLES,
    CliError,
    context,
    model_options,
    run_cli,
)
from dataio.paths import resolve_data_dir
from schemas.context import MemRecContext
from services.event_loop import run as run_async

if TYPE_CHECKING:
    from schemas.recommend_state import RecommendInput

console = Console()
T = TypeVar("T")

data_app = typer.Typer(help="Datasets: download, import and list.", no_args_is_help=True)
rules_app = typer.Typer(help="Curation rule sets: generate and show.", no_args_is_help=True)


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar as a (step, done, total) callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield update


@data_app.command("download")
def data_download(
    name: str = typer.Argument(..., help="ml-100k (the Amazon sets must be placed by hand)"),
    data_dir: str | None = DATA_DIR,
) -> None:
    """Download a public dataset into the data directory."""
    from dataio.download import download_dataset

    def go() -> None:
        path = download_dataset(name, resolve_data_dir(data_dir))
        console.print(f"[green]downloaded[/] {name} -> {path}")

    run_cli(go)


@data_app.command("import-instructrec")
def data_import_instructrec(
    pkl: Annotated[Path, typer.Argument(help="iAgent's InstructRec <domain>All_recagent.pkl")],
    mapping: Annotated[
        Path | None, typer.Option(help="the item mapping CSV (titles of candidates)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="folder to write (default <data-dir>/instructrec-<domain>)")
    ] = None,
    data_dir: str | None = DATA_DIR,
) -> None:
    """Convert InstructRec files into a generic-format folder with instructions and candidates.

    Then `memrec eval --dataset <folder>` ranks each user's own 10 candidates, passing their
    instruction as the request. Import only pickles from a source you trust.
    """
    from dataio.instructrec import default_folder, import_instructrec

    def go() -> None:
        folder = out or default_folder(pkl, resolve_data_dir(data_dir))
        report = import_instructrec(pkl, folder, mapping)
        console.print(
            f"[green]imported[/] {report.users} users, {report.items} items, "
            f"{report.interactions} interactions, {report.requests} instructions, "
            f"{report.candidate_lists} candidate lists -> {report.folder}"
        )
        console.print(f"next: memrec eval --dataset {report.folder} --method memrec")

    run_cli(go)


@data_app.command("list")
def data_list(data_dir: str | None = DATA_DIR) -> None:
    """Known datasets and whether they are in the data directory."""
    from dataio.paths import KNOWN_DATASETS

    root = resolve_data_dir(data_dir)
    table = Table("dataset", "present", "folder")
    for name in KNOWN_DATASETS:
        table.add_row(name, "yes" if (root / name).is_dir() else "no", str(root / name))
    console.print(table)


def index_dataset(
    dataset: str,
    data_dir: str | None,
    home: str | None,
    lmmem: str = "offline",
    ctx: MemRecContext | None = None,
) -> Any:
    """Build (or reuse) a dataset's index with a progress bar (``ctx``: the LMMem's settings)."""
    from services.index import build_index

    with progress_bar() as update:
        return build_index(
            dataset, data_dir=data_dir, home=home, lmmem=lmmem, progress=update, model_ctx=ctx
        )


@model_options
def index(
    dataset: str = DATASET,
    data_dir: str | None = DATA_DIR,
    home: str | None = HOME,
    roles: str | None = ROLES,
) -> None:
    """Build the graph, memories, candidates and rules of a dataset (idempotent).

    With an LLM preset, LMMem writes each user's initial memory (one call per user).
    """
    from roles.factory import role_specs

    def go() -> None:
        ctx = context(dataset, home, roles or "offline")
        lmmem = role_specs(ctx)[0]
        report = index_dataset(dataset, data_dir, home, lmmem, ctx)
        state = "reused" if report.reused else "built"
        console.print(
            f"[green]{state}[/] {report.dataset}: {report.users} users, {report.items} items, "
            f"{report.train_interactions} train interactions, "
            f"{report.memories_created} memories created in {report.seconds:.1f} s "
            f"-> {report.directory}"
        )
        _print_ranker(report.ranker)

    run_cli(go)


def _print_ranker(ranker: dict[str, Any]) -> None:
    """How the offline ranker was tuned on validation (``ranker.json``)."""
    if not ranker.get("tuned"):
        reason = ranker.get("not_tuned", "reused an index built before tuning existed")
        console.print(f"[yellow]offline ranker not tuned[/] ({reason}): default weights")
        return
    weights = ", ".join(f"{k} {v:g}" for k, v in ranker["weights"].items())
    console.print(
        f"offline ranker tuned on {ranker.get('valid_users')} validation users "
        f"(valid H@1 {ranker.get('valid_h1')}, {ranker.get('seconds')} s): {weights}; "
        f"lift of channel groups (cross-validated H@1): {ranker.get('group_lift_cv_h1')}"
    )


@rules_app.command("generate")
@model_options
def rules_generate(
    dataset: str = DATASET, home: str | None = HOME, roles: str | None = ROLES
) -> None:
    """Run the rules graph: domain statistics -> LMMem -> validated rule set, saved."""
    from graph.rules import graph

    def go() -> None:
        ctx = context(dataset, home, roles)
        out = run_async(graph.ainvoke({}, context=ctx))
        console.print(f"[green]saved[/] {out['path']}")
        _print_rules(out["rules"])
        for note in out.get("notes") or []:
            console.print(f"[yellow]note:[/] {note}")

    run_cli(go)


@rules_app.command("show")
def rules_show(
    dataset: str = DATASET,
    home: str | None = HOME,
    which: str = typer.Option("generated", help="generated or generic"),
) -> None:
    """Show a saved rule set."""
    from memory_store.workspace import workspace_for

    def go() -> None:
        if which not in ("generated", "generic"):
            raise CliError(f"--which {which!r}: accepted generated, generic")
        ws = workspace_for(context(dataset, home, None))
        _print_rules(ws.rules(which))  # type: ignore[arg-type]

    run_cli(go)


def _print_rules(rules: Any) -> None:
    console.print(f"[bold]{rules.name}[/] ({rules.source}): {rules.rationale}")
    table = Table("neighbour", "feature", "weight")
    for w in rules.weights:
        table.add_row(w.neighbour_type, w.feature, f"{w.weight:g}")
    console.print(table)
    table = Table("rule", "applies to", "condition", "effect")
    for r in rules.rules:
        effect = f"x{r.value:g}" if r.effect == "multiply" else f"+{r.value:g}"
        table.add_row(
            r.name, r.neighbour_type, f"{r.feature} {r.comparison} {r.threshold:g}", effect
        )
    console.print(table)


async def _recommend(ctx: MemRecContext, inp: RecommendInput) -> dict[str, Any]:
    from graph.recommend import graph

    out: dict[str, Any] = await graph.ainvoke(inp, context=ctx)
    return out


def print_ranking(out: dict[str, Any], ctx: MemRecContext) -> None:
    """Table of rank, title, score, rationale, plus facets and notes."""
    from memory_store.workspace import workspace_for

    ws = workspace_for(ctx)
    table = Table("rank", "item", "title", "score", "rationale", show_lines=False)
    for pos, item in enumerate(out["ranking"], 1):
        title = ws.title(ws.item_code(item.item_id))
        table.add_row(str(pos), item.item_id, title, f"{item.score:.3f}", item.rationale)
    console.print(table)
    if out.get("facets"):
        console.print(
            "[bold]facets:[/] " + "; ".join(f"{f.name} ({f.confidence:.2f})" for f in out["facets"])
        )
    for note in out.get("notes") or []:
        console.print(f"[yellow]note:[/] {note}")


@model_options
def recommend(
    user: str = typer.Option(..., "--user", help="user id"),
    dataset: str = DATASET,
    candidates: str | None = typer.Option(
        None, help="comma-separated item ids (default: the benchmark candidate list)"
    ),
    request: str | None = typer.Option(None, help="free-text request"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    home: str | None = HOME,
    roles: str | None = ROLES,
) -> None:
    """Rank candidates for a user with rationales."""

    def go() -> None:
        ctx = context(dataset, home, roles)
        inp: RecommendInput = {"user_id": user, "request": request}
        if candidates is not None:
            inp["candidates"] = [c.strip() for c in candidates.split(",") if c.strip()]
        out = run_async(_recommend(ctx, inp))
        if as_json:
            typer.echo(json.dumps(_jsonable(out), indent=2))
        else:
            print_ranking(out, ctx)

    run_cli(go)


def _jsonable(out: dict[str, Any]) -> dict[str, Any]:
    def conv(v: Any) -> Any:
        if hasattr(v, "model_dump"):
            return v.model_dump()
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in out.items()}


@model_options
def demo(
    dataset: str = typer.Option("ml-100k", help="dataset to demo"),
    user: str = typer.Option("1", help="user id"),
    data_dir: str | None = DATA_DIR,
    home: str | None = HOME,
    roles: str | None = ROLES,
) -> None:
    """Index if needed, recommend with rationales, record a feedback, show the memory it changed.

    Offline unless ``--roles`` (or MEMREC_ROLES / --lmmem / --llmrec) names models.
    """

    def go() -> None:
        from dataio.paths import store_dir

        if not (store_dir(dataset, home) / "index.json").exists():
            root = resolve_data_dir(data_dir)
            if dataset == "ml-100k" and not (root / dataset).is_dir():
                from dataio.download import download_dataset

                console.print(f"{dataset} is not in {root}: downloading it")
                download_dataset(dataset, root)
        index_dataset(dataset, data_dir, home)
        ctx = context(dataset, home, roles or os.environ.get("MEMREC_ROLES") or "offline")
        cands = _demo_candidates(ctx, user)
        console.rule(f"Recommendations for user {user} ({dataset}, {ctx.roles} roles)")
        console.print(
            "Ranked: the user's validation candidates (their second-to-last item and 9 items they "
            "never chose). Their test candidates stay unseen, so the feedback recorded below can "
            "never be the held-out test target."
        )
        out = run_async(_recommend(ctx, {"user_id": user, "candidates": cands}))
        print_ranking(out, ctx)
        top = out["ranking"][0].item_id
        run_async(_feedback_and_show(ctx, user, top))

    run_cli(go)


def _demo_candidates(ctx: MemRecContext, user: str) -> list[str]:
    """The user's validation candidate list (never their test target), as item ids."""
    from memory_store.workspace import workspace_for

    ws = workspace_for(ctx)
    code = ws.user_code(user)
    try:
        codes = ws.benchmark_candidates("valid", 10, 0).get(code)
    except (OSError, ValueError):  # a catalogue too small for a 10-candidate file
        codes = None
    if not codes:
        raise CliError(
            f"user {user!r} has no validation candidate list (fewer than 3 interactions, or a "
            "catalogue under 10 items); pick another --user"
        )
    test = set(ws.split.test.loc[ws.split.test["user"] == code, "item"].tolist())
    return [ws.dataset.item_ids[i] for i in codes if i not in test]


async def _feedback_and_show(ctx: MemRecContext, user: str, item: str) -> None:
    from memory_store.workspace import workspace_for
    from nodes.record import record_interaction
    from services.worker import PropagationWorker

    ws = workspace_for(ctx)
    console.rule(f"Feedback: user {user} liked {ws.title(ws.item_code(item))}")
    before = ws.memory_text("user", user)
    event = record_interaction(ws, user, item, "positive")
    console.print(f"recorded interaction {event.interaction_id} (durable, job queued)")
    done = await PropagationWorker(ws, ctx).drain()
    after = ws.memory_text("user", user)
    console.print(f"background propagation ran {done} job(s)")
    for row in ws.events.writes_caused_by(event.interaction_id):
        console.print(f"  wrote {row.kind}:{row.entity_id} -> version {row.version}")
    console.print(f"[bold]user memory before:[/] {before}")
    console.print(f"[bold]user memory after:[/]  {after}")


def register(app: typer.Typer) -> None:
    """Add the core commands to the app."""
    app.add_typer(data_app, name="data")
    app.add_typer(rules_app, name="rules")
    app.command("index")(index)
    app.command("recommend")(recommend)
    app.command("demo")(demo)
