"""``python -m bench <name> [--quick] [--out DIR]`` (``python -m bench all`` runs every one)."""

from __future__ import annotations

import sys

from bench.cli import BENCHMARKS, LANES, app


def main() -> None:
    """Accept ``python -m bench <name>`` as well as ``python -m bench run <name>``."""
    args = sys.argv[1:]
    if args and (args[0] in BENCHMARKS + LANES or args[0] == "all"):
        args = ["run", *args]
    app(args, prog_name="python -m bench")


if __name__ == "__main__":
    main()
