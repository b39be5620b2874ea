"""wrk runs: the command and environment of one scenario against one server, and the scenario's
machine-readable ``RESULT`` line (see ``scenarios/lib.lua``) read back from wrk's output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import REPO, RunError

__all__ = [
    "PARITY_ISBN_SLOT",
    "SCENARIOS",
    "SCENARIO_DIR",
    "WRITE_SCENARIOS",
    "WRK_TIMEOUT",
    "Wrk",
    "find_wrk",
    "socket_errors",
]

SCENARIO_DIR = Path("benchmarks/scenarios")  # relative: wrk runs from the repository root
SCENARIOS = (
    "get_book",
    "list_books",
    "filter_books",
    "search_books",
    "deep_cursor",
    "get_cover",
    "create_book",
    "update_book",
    "create_order",
    "mixed",
)
# The scenarios that create books, and so must skip the seeded ISBNs (ISBN_SKIP_FILE): reading
# the file costs each wrk thread a moment and memory (~500,000 ISBNs at a million books).
WRITE_SCENARIOS = frozenset({"create_book", "mixed"})
WRK_TIMEOUT = "10s"  # wrk's per-request timeout; slower responses count as socket errors
PARITY_ISBN_SLOT = 99  # ISBN slot of the SQL check's creates; wrk runs use slots from 0 up


def find_wrk() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        raise RunError("wrk is not installed (Debian: apt-get install wrk)")
    return binary


def socket_errors(result: Mapping[str, Any]) -> int:
    """All of a result's socket errors: connect, read, write and timeout."""
    return sum(int(value) for value in result.get("socket_errors", {}).values())


@dataclass
class Wrk:
    """Runs the scenarios as the admin (``token``) on books ``min_id..max_id``, searching for the
    words of ``words_file``, opening the pages of ``cursors_file`` and reading the covers of
    ``covers_file``; outputs go to ``logs``."""

    binary: str
    token: str
    min_id: int
    max_id: int
    skip_file: Path
    words_file: Path
    cursors_file: Path
    covers_file: Path | None  # None when get_cover is not run
    logs: Path
    next_slot: int = 0

    def command(self, scenario: str, url: str, *, duration: int, connections: int) -> list[str]:
        return [
            self.binary,
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "--timeout",
            WRK_TIMEOUT,
            "-s",
            str(SCENARIO_DIR / f"{scenario}.lua"),
            url,
        ]

    def environment(self, scenario: str, connections: int, rate: int | None) -> dict[str, str]:
        # Every wrk run gets its own ISBN slot, so created ISBNs never repeat within a run.
        if self.next_slot >= PARITY_ISBN_SLOT:
            raise RunError("out of ISBN slots (99 wrk runs)")
        env = dict(os.environ)
        env.update(
            TOKEN=self.token,
            MIN_ID=str(self.min_id),
            MAX_ID=str(self.max_id),
            CONNECTIONS=str(connections),
            THREADS="1",
            ISBN_SLOT=str(self.next_slot),
            SEARCH_WORDS_FILE=str(self.words_file),
            CURSOR_FILE=str(self.cursors_file),
            COVER_URLS_FILE=str(self.covers_file or ""),
        )
        env.pop("ISBN_SKIP_FILE", None)
        if scenario in WRITE_SCENARIOS:
            env["ISBN_SKIP_FILE"] = str(self.skip_file)
        env.pop("RATE", None)
        env.pop("READ_PCT", None)  # mixed.lua's default 90 %
        if rate is not None:
            env["RATE"] = str(rate)
        self.next_slot += 1
        return env

    def start(
        self, scenario: str, url: str, *, duration: int, connections: int, rate: int | None = None
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(  # noqa: S603 - wrk, no shell
            self.command(scenario, url, duration=duration, connections=connections),
            env=self.environment(scenario, connections, rate),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, process: subprocess.Popen[str], duration: int, label: str) -> dict[str, Any]:
        """Wait for a started run; its RESULT, its output kept as ``wrk-<label>.txt``."""
        try:
            stdout, stderr = process.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RunError(f"wrk ({label}) did not finish within {duration + 60} s") from None
        (self.logs / f"wrk-{label}.txt").write_text(stdout + stderr)
        for line in stdout.splitlines():
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[len("RESULT ") :])
                return result
        raise RunError(f"wrk ({label}) printed no RESULT line (exit {process.returncode}):\n{stdout}{stderr}")

    def run(
        self, scenario: str, url: str, *, duration: int, connections: int, label: str, rate: int | None = None
    ) -> dict[str, Any]:
        process = self.start(scenario, url, duration=duration, connections=connections, rate=rate)
        try:
            return self.finish(process, duration, label)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
