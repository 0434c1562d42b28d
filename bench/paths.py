"""Where the benchmarks read data and write results (light: the CLI's options need it at start)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "results"
DEFAULT_HOME = DEFAULT_OUT / "home"


def default_data_dir() -> Path:
    """The shared benchmark data: ``$MEMREC_DATA_DIR`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MEMREC_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"
