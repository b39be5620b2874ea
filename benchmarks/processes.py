"""CPU time and memory of the measured processes, read from /proc: the CPU time of process trees
(server, PostgreSQL, Redis) between two points in time, the Granian master and workers of a
server and their resident memory, and how busy the machine's CPUs are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bookstore.testing.processes import cmdline, parent_pid, process_tree, stat_fields

__all__ = [
    "CLOCK_TICKS",
    "CpuMeter",
    "cpu_busy_fraction",
    "cpu_ticks",
    "granian_master",
    "granian_workers",
    "memory_kib",
    "workers_memory_mib",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids: Sequence[int]) -> dict[int, int]:
    """utime + stime of each process (all its threads), in clock ticks."""
    ticks = {}
    for pid in pids:
        if (fields := stat_fields(pid)) is not None:
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def memory_kib(pid: int, field: str = "VmHWM") -> int | None:
    """A memory field of /proc/<pid>/status: VmHWM (peak resident set) or VmRSS (current)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class CpuMeter:
    """CPU time of process trees (server, PostgreSQL, Redis) between two points in time."""

    roots: dict[str, int | None]
    _before: dict[str, dict[int, int]] = field(default_factory=dict)

    def _snapshot(self) -> dict[str, dict[int, int]]:
        return {name: cpu_ticks(process_tree(root)) if root else {} for name, root in self.roots.items()}

    def start(self) -> None:
        self._before = self._snapshot()

    def stop(self) -> dict[str, float | None]:
        """Seconds of CPU per tree since start(); processes that exited meanwhile are not counted."""
        after = self._snapshot()
        used: dict[str, float | None] = {}
        for name, ticks in after.items():
            if not self.roots[name]:
                used[name] = None
                continue
            before = self._before.get(name, {})
            used[name] = sum(value - before.get(pid, 0) for pid, value in ticks.items()) / CLOCK_TICKS
        return used


def granian_master(root: int) -> int:
    """The Granian process under ``root`` whose children are the workers (``bookstore serve`` runs
    it as a subprocess), or ``root`` itself.

    Granian renames its processes ("granian asgi 127.0.0.1:8000 app", "... worker-1").
    """
    for pid in process_tree(root):  # parents first
        argv = cmdline(pid)
        if argv and (argv[0].split(" ")[0] == "granian" or argv[1:3] == ["-m", "granian"]):
            return pid
    return root


def granian_workers(root: int) -> list[int]:
    """The Granian master's children, except multiprocessing's resource tracker."""
    master = granian_master(root)
    return [
        pid
        for pid in process_tree(master)
        if parent_pid(pid) == master and not any("resource_tracker" in arg for arg in cmdline(pid))
    ]


def workers_memory_mib(root: int, field: str = "VmHWM") -> list[float]:
    """A memory field (see :func:`memory_kib`) of each Granian worker under ``root``, in MiB."""
    return [round(kib / 1024, 1) for pid in granian_workers(root) if (kib := memory_kib(pid, field)) is not None]


def cpu_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all CPUs' time that was not idle (or waiting for I/O) over the next ``seconds``."""

    def sample() -> tuple[int, int]:
        values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    busy_before, total_before = sample()
    time.sleep(seconds)
    busy_after, total_after = sample()
    return (busy_after - busy_before) / max(1, total_after - total_before)
