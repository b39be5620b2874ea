"""Linux processes as ``/proc`` shows them: parents, trees, groups, start times and command lines.

The launchers use them to stop a server together with everything it started; the benchmark uses
them to account for the CPU time and memory of a server's processes.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cmdline", "parent_pid", "process_group", "process_tree", "start_time", "stat_fields"]

# Indexes into stat_fields(): /proc/<pid>/stat's fields 4 (ppid), 5 (pgrp) and 22 (starttime).
_PARENT, _GROUP, _START_TIME = 1, 2, 19


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (after the command name), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _all_processes() -> dict[int, list[str]]:
    processes = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := stat_fields(int(entry.name))) is not None:
            processes[int(entry.name)] = fields
    return processes


def parent_pid(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[_PARENT]) if fields is not None else None


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive, parents before children."""
    processes = _all_processes()
    children: dict[int, list[int]] = {}
    for pid, fields in processes.items():
        children.setdefault(int(fields[_PARENT]), []).append(pid)
    tree, queue = [], [root] if root in processes else []
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return tree


def process_group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    return [pid for pid, fields in _all_processes().items() if int(fields[_GROUP]) == pgid]


def start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot: with the pid, names one process for good."""
    fields = stat_fields(pid)
    return int(fields[_START_TIME]) if fields is not None else None


def cmdline(pid: int) -> list[str]:
    """The process's arguments (as it may have rewritten them), empty if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []
