"""What a run reports: the measurement of one scenario on one target, the Markdown tables, the
JSON document, and the facts about the machine, versions and commit that go with them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import REPO
from bookstore.testing import fetch_rows

__all__ = [
    "TABLE_NOTE",
    "Measurement",
    "git_state",
    "logs_directory",
    "machine",
    "markdown_table",
    "number",
    "per_request",
    "print_measurement",
    "print_sustained",
    "versions",
    "write_json",
]

TABLE_NOTE = (
    "ratio to floor = app requests/s ÷ floor requests/s. CPU per request: utime+stime of every process of the "
    "server's tree (PostgreSQL's and Redis's trees separately) during the measured run ÷ requests. Peak RSS: "
    "VmHWM of each Granian worker."
)


@dataclass
class Measurement:
    scenario: str
    target: str
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    statuses: dict[str, int]
    first_error: str
    warmup_non2xx: int
    server_cpu_us_per_request: float | None
    postgres_cpu_us_per_request: float | None
    redis_cpu_us_per_request: float | None
    worker_peak_rss_mib: list[float]
    worker_rss_mib: list[float]
    ratio_to_floor: float | None = None


def per_request(seconds: float | None, requests: int) -> float | None:
    """CPU seconds as µs per request, or None when unknown."""
    if seconds is None or requests == 0:
        return None
    return round(seconds * 1e6 / requests, 1)


def number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def print_measurement(m: Measurement) -> None:
    """The progress line of one measured run."""
    print(
        f"  {m.scenario:<12} {m.target:<5} {m.rps:>9,.0f} req/s  p50 {m.p50_ms:6.1f} ms  p99 {m.p99_ms:7.1f} ms  "
        f"non-2xx {m.non2xx}"
    )


def markdown_table(measurements: Sequence[Measurement]) -> str:
    lines = [
        "| scenario | target | requests/s | p50 | p99 | non-2xx | ratio to floor | server CPU-µs/req "
        "| PostgreSQL CPU-µs/req | Redis CPU-µs/req | peak RSS/worker (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in measurements:
        rss = " / ".join(f"{value:.0f}" for value in m.worker_peak_rss_mib) or "-"
        errors = f"{m.non2xx:,}" + (f" (+{m.socket_errors} socket errors)" if m.socket_errors else "")
        lines.append(
            f"| {m.scenario} | {m.target} | {number(m.rps)} | {m.p50_ms:.1f} ms | {m.p99_ms:.1f} ms | {errors} "
            f"| {number(m.ratio_to_floor, 2)} | {number(m.server_cpu_us_per_request)} "
            f"| {number(m.postgres_cpu_us_per_request)} | {number(m.redis_cpu_us_per_request)} | {rss} |"
        )
    return "\n".join(lines)


def print_sustained(report: Mapping[str, Any]) -> None:
    rate, connections = report["target_rps_each"], report["connections_each"]
    print(
        f"\nSustained check: {rate:,} req/s of reads and {rate:,} req/s of writes at once, "
        f"{report['seconds']} s, app only ({connections} connections each, paced):\n"
    )
    print("| stream | target req/s | achieved req/s | p50 | p99 | p99.9 | non-2xx | socket errors | sustained |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, stream in report["streams"].items():
        print(
            f"| {name} | {rate:,} | {stream['achieved_rps']:,.0f} | {stream['p50_ms']:.1f} ms "
            f"| {stream['p99_ms']:.1f} ms | {stream['p999_ms']:.1f} ms | {stream['non2xx']:,} "
            f"| {stream['socket_errors']:,} | {'yes' if stream['sustained'] else 'NO'} |"
        )
    print(
        f"\nServer CPU during the check: {number(report['server_cpu_cores'], 2)} cores, "
        f"{number(report['server_cpu_us_per_request'])} µs per request."
    )


def logs_directory(output: Path) -> Path:
    """Where wrk's outputs and the servers' logs go: ``latest.json`` -> ``latest-logs/``."""
    return output.with_name(output.stem + "-logs")


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
    }


def versions(wrk_binary: str, database_url: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    postgres = fetch_rows(database_url, "SHOW server_version")[0][0]
    found = {"python": platform.python_version(), "postgres": str(postgres)}
    for package in ("granian", "litestar", "asyncpg", "msgspec", "piccolo"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        output = subprocess.run(  # noqa: S603 - wrk, no shell
            [wrk_binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        found["wrk"] = (output.stdout + output.stderr).split("[")[0].strip()
    return found


def git_state() -> dict[str, Any]:
    git = shutil.which("git")
    if git is None:
        return {}
    try:
        commit = subprocess.run(  # noqa: S603 - git, no shell
            [git, "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(  # noqa: S603 - git, no shell
            [git, "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "uncommitted_changes": bool(dirty)}
