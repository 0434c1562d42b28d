"""``memrec bench ...``: the benchmark suite of ``bench/`` under the main command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command group (the same code as ``python -m bench``)."""
    from bench.cli import app as bench_app

    app.add_typer(bench_app, name="bench")
