"""`memrec --help` starts at once: commands import no heavy stack until they run."""

import json
import subprocess
import sys

from cli.propagation_cmds import JOB_STATUSES as CLI_JOB_STATUSES
from memory_store.jobs import JOB_STATUSES

HEAVY = (
    "chromadb",
    "pandas",
    "scipy",
    "langgraph",
    "langchain_core",
    "openai",
    "matplotlib",
    "memory_store.workspace",
    "evaluation.runner",
    "graph.recommend",
)


def test_building_the_cli_imports_no_heavy_module() -> None:
    code = (
        "import json, sys\n"
        "from typer.main import get_command\n"
        "from cli.main import app\n"
        "get_command(app)\n"  # every command and option, as `memrec <cmd> --help` builds them
        f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []


def test_the_cli_lists_the_job_statuses_of_the_queue() -> None:
    assert CLI_JOB_STATUSES == JOB_STATUSES
