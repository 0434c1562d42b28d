"""The benchmark command line: ``python -m bench <name>`` and ``memrec bench <name>``."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bench.paths import DEFAULT_HOME, DEFAULT_OUT, default_data_dir

if TYPE_CHECKING:
    from bench.common import BenchOptions, BenchResult

BENCHMARKS = (
    "online",
    "tokens",
    "propagation_degree",
    "propagation",
    "throughput",
    "index",
    "chroma",
    "catalogue",
    "llm_cpu",
    "screen",
    "chaos",
)
# Run by name only, never by ``all``: the first run builds llama.cpp, then steps take minutes.
LANES = ("realmodel",)

app = typer.Typer(
    name="bench",
    help="Performance and scale benchmarks; each prints a table and writes <out>/<name>.json.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def run_benchmark(name: str, opts: BenchOptions) -> BenchResult:
    """Run one benchmark by name (see ``BENCHMARKS``)."""
    if name not in BENCHMARKS + LANES:
        raise ValueError(
            f"unknown benchmark {name!r}: accepted {', '.join(BENCHMARKS + LANES)}, all"
        )
    module = importlib.import_module(f"bench.{name}")
    result: BenchResult = module.run(opts)
    return result


@app.command()
def run(
    name: Annotated[
        str, typer.Argument(help=f"one of {', '.join(BENCHMARKS + LANES)}, or all (no lanes)")
    ],
    quick: Annotated[bool, typer.Option("--quick", help="small settings (minutes)")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="tiny settings (seconds)")] = False,
    out: Annotated[Path, typer.Option(help="folder for the JSON results")] = DEFAULT_OUT,
    home: Annotated[Path, typer.Option(help="MemRec home for the indexes")] = DEFAULT_HOME,
    data_dir: Annotated[Path | None, typer.Option(help="benchmark data folder")] = None,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", help="override the datasets (repeatable)")
    ] = None,
) -> None:
    """Run a benchmark (or all of them, in order)."""
    from bench.common import BenchOptions

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opts = BenchOptions(
        quick=quick,
        smoke=smoke,
        out=out,
        home=home,
        data_dir=data_dir or default_data_dir(),
        datasets=dataset or None,
    )
    names = BENCHMARKS if name == "all" else (name,)
    if name != "all" and name not in BENCHMARKS + LANES:
        raise typer.BadParameter(
            f"unknown benchmark {name!r}: accepted {', '.join(BENCHMARKS + LANES)}, all"
        )
    for each in names:
        run_benchmark(each, opts)


@app.command("list")
def list_benchmarks() -> None:
    """List the benchmarks."""
    for name in BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        summary = (module.__doc__ or "").strip().splitlines()[0]
        typer.echo(f"{name:20s} {summary}")


@app.command()
def deploy(
    dataset: Annotated[str, typer.Option(help="indexed dataset to serve")] = "ml-100k",
    servers: Annotated[int, typer.Option(help="serving processes")] = 2,
    workers: Annotated[int, typer.Option(help="`memrec worker` processes")] = 1,
    home: Annotated[Path, typer.Option(help="MemRec home holding the index")] = DEFAULT_HOME,
    data_dir: Annotated[Path | None, typer.Option(help="benchmark data folder")] = None,
) -> None:
    """Start the scaled deployment on loopback (Postgres, Chroma server, servers, workers)."""
    from bench.common import BenchOptions
    from bench.deploy import serve_until_enter

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opts = BenchOptions(home=home, data_dir=data_dir or default_data_dir())
    serve_until_enter(dataset, opts, servers, workers)
