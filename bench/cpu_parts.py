"""Where a benchmark wave's CPU went: per part of the deployment, and the machine as a whole.

A part is a named set of process trees (the bench client, the model server, the serving
processes, Postgres, ...). Its CPU is user + system time of every live process in its trees plus
the ``children_*`` time of those processes (children they have reaped: a Postgres backend that
ended, a restarted worker), so a process exiting between two snapshots moves its time from one
term to the other and nothing is lost. ``machine`` is the system-wide busy time
(``psutil.cpu_times()``: everything but idle and iowait), which also counts what other programs on
the machine did meanwhile; ``other`` is machine minus the parts.

``ceiling_per_s = 1000 x cores / machine_ms_per_request``: the requests/s this machine could reach
if every core were busy with this request mix, whatever the concurrency.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

Roots = Callable[[], Iterable[int]]  # the root pids of a part, looked up at every snapshot


def tree_cpu_seconds(root: int, *, own_only: bool = False) -> float:
    """CPU seconds of a process and its live descendants, with what they reaped (0 if gone).

    ``own_only``: the process alone, without its children (the measuring process, whose
    children are other parts).
    """
    try:
        proc = psutil.Process(root)
        procs = [proc] if own_only else [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total += t.user + t.system
        if not own_only:
            total += t.children_user + t.children_system
    return total


def machine_busy_seconds() -> float:
    """System-wide busy CPU seconds since boot (all cores; guest time is already in user)."""
    t = psutil.cpu_times()
    busy = t.user + t.system
    for name in ("nice", "irq", "softirq", "steal"):
        busy += getattr(t, name, 0.0)
    return busy


def children_matching(*words: str) -> list[int]:
    """Pids of this process's direct children whose command line contains every word."""
    found = []
    for child in psutil.Process().children():
        try:
            cmd = " ".join(child.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if all(w in cmd for w in words):
            found.append(child.pid)
    return found


def postmaster_pid(data_dir: Path) -> list[int]:
    """The postmaster of a cluster (first line of ``postmaster.pid``); empty if not running."""
    try:
        return [int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])]
    except (OSError, ValueError):
        return []


@dataclass
class CpuParts:
    """Snapshots of the CPU used by named parts and by the machine, for per-wave deltas."""

    parts: dict[str, Roots]
    own: str = "bench client"  # the part that is this process alone (its children are others)
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far: one entry per part, and ``machine``."""
        out = {"machine": machine_busy_seconds()}
        for name, roots in self.parts.items():
            if name == self.own:
                out[name] = tree_cpu_seconds(os.getpid(), own_only=True)
            else:
                out[name] = sum(tree_cpu_seconds(pid) for pid in roots())
        return out

    def per_request(
        self, before: dict[str, float], after: dict[str, float], requests: int
    ) -> dict[str, float]:
        """CPU ms per request: each part, their sum, ``other``, ``machine``, and both ceilings."""
        ms = {k: (after[k] - before[k]) * 1000.0 / requests for k in after}
        out = {f"cpu_ms_{_key(k)}": round(v, 2) for k, v in ms.items() if k != "machine"}
        parts = sum(v for k, v in ms.items() if k != "machine")
        out["cpu_ms_parts"] = round(parts, 2)
        out["cpu_ms_other"] = round(ms["machine"] - parts, 2)
        out["cpu_ms_machine"] = round(ms["machine"], 2)
        out["ceiling_per_s"] = round(1000.0 * self.cores / ms["machine"], 1) if ms["machine"] else 0
        out["parts_ceiling_per_s"] = round(1000.0 * self.cores / parts, 1) if parts else 0
        return out


def _key(name: str) -> str:
    return name.replace(" ", "_")
