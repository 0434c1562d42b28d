"""The per-part CPU accounting of the throughput benchmark (bench/cpu_parts.py)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from bench.cpu_parts import CpuParts, tree_cpu_seconds

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
PARENT = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BURN!r}])\ninput()"


def test_per_request_splits_machine_time_into_parts_other_and_a_ceiling() -> None:
    meter = CpuParts({"bench client": list, "serving": list}, cores=2)
    before = {"machine": 10.0, "bench client": 1.0, "serving": 2.0}
    after = {"machine": 11.0, "bench client": 1.1, "serving": 2.5}
    assert meter.per_request(before, after, 100) == {
        "cpu_ms_bench_client": 1.0,
        "cpu_ms_serving": 5.0,
        "cpu_ms_parts": 6.0,
        "cpu_ms_other": 4.0,
        "cpu_ms_machine": 10.0,
        "ceiling_per_s": 200.0,  # 2 cores x 1000 ms / 10 ms per request
        "parts_ceiling_per_s": 333.3,
    }


def test_a_tree_keeps_the_time_of_a_child_that_ended() -> None:
    """A child that burned 0.3 s and exited still counts for its parent's tree."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            psutil.Process(parent.pid).children() or tree_cpu_seconds(parent.pid) < 0.3
        ):
            time.sleep(0.05)
        assert not psutil.Process(parent.pid).children()  # the child ended and was reaped
        assert tree_cpu_seconds(parent.pid) >= 0.3
        assert tree_cpu_seconds(parent.pid, own_only=True) < 0.3
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.wait(timeout=10)
