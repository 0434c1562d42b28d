"""Options shared by the commands, the run-context builder and clear error reporting."""

from __future__ import annotations

import functools
import inspect
import json
import os
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

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
    None,
    "--roles",
    help="role preset: offline, standard, local, cloud-oss, local-qwen, ceiling (env MEMREC_ROLES)",
)
F = TypeVar("F", bound=Callable[..., Any])
# The model options every command that calls a model takes: (parameter, flag, env, help).
_MODEL_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("roles", "--roles", "MEMREC_ROLES", "role preset (offline, standard, local, ...)"),
    ("lmmem", "--lmmem", "MEMREC_LMMEM", "LMMem model spec, e.g. local or openai:gpt-4o-mini"),
    ("llmrec", "--llmrec", "MEMREC_LLMREC", "LLMRec model spec (default: the preset's)"),
    ("base_url", "--base-url", "MEMREC_BASE_URL", "OpenAI-compatible endpoint for both roles"),
    ("timeout", "--timeout", "MEMREC_TIMEOUT_S", "seconds per model call, or lmmem=600,llmrec=60"),
    ("max_tokens", "--max-tokens", "MEMREC_MAX_TOKENS", "cap on completion tokens per call"),
    ("model_concurrency", "--model-concurrency", "MEMREC_MODEL_CONCURRENCY", "calls in flight"),
    ("retries", "--retries", "MEMREC_RETRIES", "transport retries per model call"),
)
_SETTING_KINDS: dict[str, tuple[str, type[float] | type[int]]] = {
    "timeout": ("timeout", float),
    "max_tokens": ("max-tokens", int),
    "model_concurrency": ("model-concurrency", int),
    "retries": ("retries", int),
}

_err = Console(stderr=True)


class CliError(RuntimeError):
    """A command-line usage error with a message for the user."""


def context(dataset: str, home: str | None, roles: str | None, **extra: object) -> MemRecContext:
    """The run context for a command."""
    return MemRecContext.from_mapping({"dataset": dataset, "home": home, "roles": roles, **extra})


def model_options(fn: F) -> F:
    """Add the model options to a command (those it does not declare itself).

    ``--roles``, ``--lmmem``, ``--llmrec``, ``--base-url``, ``--timeout``, ``--max-tokens``,
    ``--model-concurrency``, ``--retries``: a given option sets its environment variable
    (``MEMREC_LMMEM``, ...) for this process and the processes it starts, so every run context
    the command builds (graphs, workers, eval processes) uses it; per-role values
    (``--timeout lmmem=600,llmrec=60``) go into ``MEMREC_ROLE_SETTINGS``.
    """
    signature = inspect.signature(fn)
    added = [o for o in _MODEL_OPTIONS if o[0] not in signature.parameters]
    extra = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, flag, help=f"{text} (env {env})"),
            annotation="str | None",
        )
        for name, flag, env, text in added
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name, *_ in added}
        with user_errors(ValueError):
            apply_model_options(given)
        return fn(*args, **kwargs)

    # the command's own annotations resolved in its module (``Annotated[..., typer.Option]``
    # written as strings under ``from __future__ import annotations`` would be read in this one)
    hints = typing.get_type_hints(fn, include_extras=True)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in signature.parameters.values()
        if p.kind != p.VAR_KEYWORD
    ]
    extra = [p.replace(annotation=str | None) for p in extra]
    wrapper.__signature__ = signature.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**hints, **{p.name: str | None for p in extra}}
    return wrapper  # type: ignore[return-value]


def apply_model_options(given: dict[str, str | None]) -> None:
    """Set the environment variables of the given model options (validated first)."""
    from roles.settings import merge_role_settings, parse_setting

    env = {name: var for name, _flag, var, _help in _MODEL_OPTIONS}
    settings: list[dict[str, Any]] = []
    for name, value in given.items():
        if value is None or not str(value).strip():
            continue
        if name in _SETTING_KINDS:
            option, kind = _SETTING_KINDS[name]
            settings.append(parse_setting(option, str(value), kind))
        else:
            os.environ[env[name]] = str(value).strip()
    merged = merge_role_settings(*settings)
    per_role = merged.pop("role_settings", None)
    field_env = {
        "timeout_s": "MEMREC_TIMEOUT_S",
        "max_tokens": "MEMREC_MAX_TOKENS",
        "model_concurrency": "MEMREC_MODEL_CONCURRENCY",
        "retries": "MEMREC_RETRIES",
    }
    for field, value in merged.items():
        os.environ[field_env[field]] = str(value)
    if per_role:
        known = json.loads(os.environ.get("MEMREC_ROLE_SETTINGS") or "{}")
        for role, values in per_role.items():
            known.setdefault(role, {}).update(values)
        os.environ["MEMREC_ROLE_SETTINGS"] = json.dumps(known)
    MemRecContext()  # a bad value (env or flag) fails here, naming it


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
    from services.event_loop import EventLoopConfigError

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
        ModelConfigError,  # a model transport named wrong included (roles/transport.py)
        EventLoopConfigError,
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
