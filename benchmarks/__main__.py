"""The benchmark runner: ``uv run python -m benchmarks [--smoke] [...]``.

Starts everything it measures on loopback (an embedded PostgreSQL unless ``DATABASE_URL`` is set,
a private redis-server, ``bookstore serve`` in production mode and the RSGI floor of
``benchmarks/floor.py``), seeds 10,000 books and an admin, then for each scenario runs wrk against
the app and against the floor: a warm-up, then a measured run with the servers' CPU time and the
workers' peak memory read from /proc. Prints a Markdown table, writes JSON, and finally checks
that the app sustains 1,000 reads/s and 1,000 writes/s at once. Exit code 1 when any response was
not 2xx (app or floor), a wrk run failed, or the sustained check missed its rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
import redis

REPO = Path(__file__).resolve().parent.parent
SCENARIO_DIR = Path("benchmarks/scenarios")  # relative: wrk runs from the repository root
SCENARIOS = ("get_book", "list_books", "create_book", "update_book", "mixed")
LOOPBACK = "127.0.0.1"
BOOK_COUNT = 10_000
SEED = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WRK_TIMEOUT = "10s"  # wrk's per-request timeout; slower responses count as socket errors
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 40.0
SUSTAINED_RATE = 1000  # requests/s, for reads and for writes at the same time
SUSTAINED_CONNECTIONS = 32  # per wrk process: one request every 32 ms per connection at 1000/s
SUSTAINED_TOLERANCE = 0.95  # achieved / target rate that still counts as sustained
PARITY_ISBN_SLOT = 99  # ISBN slot of the SQL check's creates; wrk runs use slots from 0 up
# Settings both the app and the floor read; passed through from the caller's environment.
PASSTHROUGH = ("BOOKSTORE_DB_POOL_MIN_SIZE", "BOOKSTORE_DB_POOL_MAX_SIZE", "BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS")
# How `bookstore serve` has Granian serve (the options litestar-granian 0.16.0 passes, which are
# Granian's own defaults), given to the floor explicitly so that both are served the same way.
# Granian renames its processes, so the app's real command line cannot be read back from /proc.
FLOOR_GRANIAN_FLAGS = (
    "--http=1",
    "--runtime-threads=1",
    "--runtime-mode=auto",
    "--blocking-threads-idle-timeout=30",
    "--loop=auto",
    "--task-impl=asyncio",
    "--backlog=1024",
    "--http1-buffer-size=417792",
    "--http1-header-read-timeout=30000",
    "--http1-keep-alive",
    "--no-http1-pipeline-flush",
    "--no-ws",
    "--log",
    "--log-level=info",
    "--no-access-log",
    "--workers-kill-timeout=20",
)
# Statements of the app's authentication (the floor has none); matched in PostgreSQL's log.
AUTH_STATEMENT_MARKERS = ("auth_session",)


class RunError(RuntimeError):
    """A step of the run failed; the message says which and why."""


# --- /proc ---------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _all_processes() -> dict[int, list[str]]:
    processes = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            processes[int(entry.name)] = fields
    return processes


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive, parents before children."""
    processes = _all_processes()
    children: dict[int, list[int]] = {}
    for pid, fields in processes.items():
        children.setdefault(int(fields[1]), []).append(pid)
    tree, queue = [], [root] if root in processes else []
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return tree


def _start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields is not None else None


def process_group(pgid: int) -> list[int]:
    return [pid for pid, fields in _all_processes().items() if int(fields[2]) == pgid]


def cpu_ticks(pids: Sequence[int]) -> dict[int, int]:
    """utime + stime of each process (all its threads), in clock ticks."""
    ticks = {}
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


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


# --- processes -----------------------------------------------------------------------------------


def _spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, **kwargs)  # noqa: S603 - our own commands, no shell


class Service:
    """A server process in its own session (immune to the terminal's Ctrl-C), stopped by stop()."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("wb") as output:
            self.process = _spawn(
                argv,
                env=dict(env),
                cwd=REPO,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM and a graceful wait, then SIGKILL, by id, for whatever is left of its processes."""
        # Its descendants (Granian runs in a session of its own) and its process group, with their
        # start times, so that a recycled pid is never mistaken for one of them.
        started = {pid: _start_time(pid) for pid in {*process_tree(self.pid), *process_group(self.pid)}}
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        for pid, start in started.items():
            if pid != self.pid and start is not None and _start_time(pid) == start:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self.alive():
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


class HttpServer(Service):
    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path, port: int) -> None:
        super().__init__(name, argv, env, log)
        self.port = port
        self.base_url = f"http://{LOOPBACK}:{port}"

    def wait_until_ready(self, path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not self.alive():
                raise RunError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.base_url + path, timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RunError(f"{self.name} was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n{self.log_tail()}")

    def granian_master(self) -> int:
        """The Granian process whose children are the workers (the app runs it as a subprocess).

        Granian renames its processes ("granian asgi 127.0.0.1:8000 app", "... worker-1").
        """
        for pid in process_tree(self.pid):  # parents first
            argv = cmdline(pid)
            if argv and (argv[0].split(" ")[0] == "granian" or argv[1:3] == ["-m", "granian"]):
                return pid
        return self.pid

    def workers(self) -> list[int]:
        """The Granian master's children, except multiprocessing's resource tracker."""
        master = self.granian_master()
        workers = []
        for pid in process_tree(master):
            fields = _stat(pid)
            is_child = fields is not None and int(fields[1]) == master
            if is_child and not any("resource_tracker" in arg for arg in cmdline(pid)):
                workers.append(pid)
        return workers

    def worker_memory_mib(self, field: str = "VmHWM") -> list[float]:
        return [round(kib / 1024, 1) for pid in self.workers() if (kib := memory_kib(pid, field)) is not None]


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis(directory: Path) -> tuple[Service, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RunError("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    service = Service(
        "redis-server",
        [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no", "--dir", str(directory)],
        os.environ,
        directory / "redis.log",
    )
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=0.5)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                if client.ping():
                    return service, f"redis://{LOOPBACK}:{port}/0"
            except redis.ConnectionError:
                if time.monotonic() > deadline or not service.alive():
                    service.stop()
                    raise RunError(f"redis-server did not start:\n{service.log_tail()}") from None
            time.sleep(0.05)
    finally:
        client.close()


def run_command(argv: Sequence[str], env: Mapping[str, str], timeout: float = 600) -> str:
    """Run a command to completion; its output, or RunError with the output."""
    try:
        done = subprocess.run(  # noqa: S603 - our own commands, no shell
            argv, env=dict(env), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise RunError(f"`{' '.join(argv[1:])}` took more than {timeout:.0f} s") from error
    if done.returncode != 0:
        raise RunError(f"`{' '.join(argv[1:])}` failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def bookstore(*args: str) -> list[str]:
    return [sys.executable, "-m", "bookstore", *args]


# --- database ------------------------------------------------------------------------------------


async def _query(url: str, sql: str, *args: object) -> list[Any]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def query(url: str, sql: str, *args: object) -> list[Any]:
    return asyncio.run(_query(url, sql, *args))


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def isbn13(stem: str) -> str:
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(stem))
    return stem + str((10 - total % 10) % 10)


# --- wrk -----------------------------------------------------------------------------------------


@dataclass
class Wrk:
    binary: str
    token: str
    min_id: int
    max_id: int
    skip_file: Path
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

    def environment(self, connections: int, rate: int | None) -> dict[str, str]:
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
            ISBN_SKIP_FILE=str(self.skip_file),
        )
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
            env=self.environment(connections, rate),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, process: subprocess.Popen[str], duration: int, label: str) -> dict[str, Any]:
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


def socket_errors(result: Mapping[str, Any]) -> int:
    return sum(int(value) for value in result.get("socket_errors", {}).values())


# --- the run -------------------------------------------------------------------------------------


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
    if seconds is None or requests == 0:
        return None
    return round(seconds * 1e6 / requests, 1)


def measure(
    wrk: Wrk, server: HttpServer, target: str, scenario: str, meter_roots: dict[str, int | None], args: Options
) -> Measurement:
    label = f"{scenario}-{target}"
    warm = wrk.run(
        scenario, server.base_url, duration=args.warmup, connections=args.connections, label=label + "-warmup"
    )
    meter = CpuMeter({"server": server.pid, **meter_roots})
    meter.start()
    result = wrk.run(scenario, server.base_url, duration=args.duration, connections=args.connections, label=label)
    cpu = meter.stop()
    requests = int(result["requests"])
    return Measurement(
        scenario=scenario,
        target=target,
        rps=float(result["rps"]),
        p50_ms=float(result["p50_ms"]),
        p99_ms=float(result["p99_ms"]),
        p999_ms=float(result["p999_ms"]),
        requests=requests,
        non2xx=int(result["non2xx"]),
        socket_errors=socket_errors(result),
        statuses=result.get("statuses", {}),
        first_error=result.get("first_error", "") or warm.get("first_error", ""),
        warmup_non2xx=int(warm["non2xx"]),
        server_cpu_us_per_request=per_request(cpu["server"], requests),
        postgres_cpu_us_per_request=per_request(cpu.get("postgres"), requests),
        redis_cpu_us_per_request=per_request(cpu.get("redis"), requests),
        worker_peak_rss_mib=server.worker_memory_mib("VmHWM"),
        worker_rss_mib=server.worker_memory_mib("VmRSS"),
    )


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


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
            f"| {m.scenario} | {m.target} | {_number(m.rps)} | {m.p50_ms:.1f} ms | {m.p99_ms:.1f} ms | {errors} "
            f"| {_number(m.ratio_to_floor, 2)} | {_number(m.server_cpu_us_per_request)} "
            f"| {_number(m.postgres_cpu_us_per_request)} | {_number(m.redis_cpu_us_per_request)} | {rss} |"
        )
    return "\n".join(lines)


@dataclass
class Options:
    duration: int
    warmup: int
    connections: int
    workers: int
    scenarios: list[str]
    sustained_seconds: int | None
    output: Path


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds of each measured run (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up before each (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="Granian workers of app and floor (default 2)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--smoke", action="store_true", help="2 s runs after 1 s warm-ups, no sustained check")
    parser.add_argument("--sustained-seconds", type=int, default=60, help="length of the sustained check (default 60)")
    parser.add_argument("--no-sustained", action="store_true", help="skip the sustained check")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/latest.json"), help="JSON results")
    options = parser.parse_args(argv)
    scenarios = [name.strip() for name in options.scenarios.split(",") if name.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown or not scenarios:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    for name in ("duration", "warmup", "connections", "workers", "sustained_seconds"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if options.smoke:
        options.duration, options.warmup, options.no_sustained = 2, 1, True
    return Options(
        duration=options.duration,
        warmup=options.warmup,
        connections=options.connections,
        workers=options.workers,
        scenarios=scenarios,
        sustained_seconds=None if options.no_sustained else options.sustained_seconds,
        output=options.output if options.output.is_absolute() else REPO / options.output,
    )


def server_environment(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BOOKSTORE_") or key in PASSTHROUGH}
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "BOOKSTORE_ENV": "production",
            "BOOKSTORE_SECRET_KEY": secrets.token_hex(32),
            "BOOKSTORE_DATA_DIR": str(data_dir),
            "BOOKSTORE_LOG_LEVEL": "INFO",
            "BOOKSTORE_ACCESS_TOKEN_TTL_SECONDS": "86400",  # one login must cover the whole run
            "BOOKSTORE_RATE_LIMIT_ENABLED": "true",  # on, with limits far above the load
            "BOOKSTORE_RATE_LIMIT_REQUESTS": "1000000000",
            "BOOKSTORE_LOGIN_RATE_LIMIT_PER_IP": "1000000",
            "BOOKSTORE_LOGIN_RATE_LIMIT_PER_EMAIL": "1000000",
            "BOOKSTORE_REGISTER_RATE_LIMIT_PER_IP": "1000000",
        }
    )
    return env


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


def versions(wrk_binary: str, database_url: str) -> dict[str, str]:
    from importlib.metadata import version

    found = {"python": platform.python_version(), "postgres": str(query(database_url, "SHOW server_version")[0][0])}
    for package in ("granian", "litestar", "asyncpg", "msgspec", "piccolo"):
        with contextlib.suppress(Exception):
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


# --- SQL parity ----------------------------------------------------------------------------------

_LOGGED_STATEMENT = re.compile(r"LOG:\s+(?:statement|execute [^:]*): (.*)$")


def _parity_requests(isbns: Iterator[str]) -> dict[str, Any]:
    """One representative request per scenario (mixed is get_book plus create_book)."""

    def create() -> tuple[str, str, dict[str, Any]]:
        body = {
            "title": "SQL check",
            "author": "Load Tester",
            "publish_date": "2020-01-01",
            "isbn": next(isbns),
            "price": "12.50",
        }
        return "POST", "/api/v1/books", body

    return {
        "get_book": lambda: ("GET", "/api/v1/books/1", None),
        "list_books": lambda: ("GET", "/api/v1/books?min_price=10.00&max_price=30.00&sort=-price&limit=20", None),
        "create_book": create,
        "update_book": lambda: ("PATCH", "/api/v1/books/1", {"price": "12.34"}),
    }


def check_sql_parity(
    database_url: str, log: Path, servers: Mapping[str, HttpServer], token: str, skip: set[str]
) -> dict[str, Any]:
    """Send one request per scenario to app and floor with PostgreSQL's statement log on; compare."""

    def isbn_source() -> Iterator[str]:
        for sequence in range(1, 10**7):
            isbn = isbn13(f"979{PARITY_ISBN_SLOT:02d}{sequence:07d}")
            if isbn not in skip:
                yield isbn

    def statements_of(server: HttpServer, make: Any) -> tuple[list[str], int]:
        status = 0
        for _ in range(2):  # the second request shows the steady state (statements prepared)
            start = log.stat().st_size
            method, path, body = make()
            headers = {"Authorization": f"Bearer {token}"} if method != "GET" else {}
            status = httpx.request(method, server.base_url + path, json=body, headers=headers, timeout=10).status_code
            time.sleep(0.5)  # the pool's release and the log write happen after the response
        with log.open("rb") as file:
            file.seek(start)
            text = file.read().decode(errors="replace")
        found = [match.group(1).strip() for line in text.splitlines() if (match := _LOGGED_STATEMENT.search(line))]
        return found, status

    isbns = isbn_source()
    query(database_url, "ALTER SYSTEM SET log_statement = 'all'")
    query(database_url, "SELECT pg_reload_conf()")
    time.sleep(1.0)
    report: dict[str, Any] = {}
    try:
        for scenario, make in _parity_requests(isbns).items():
            entry: dict[str, Any] = {}
            for target, server in servers.items():
                statements, status = statements_of(server, make)
                entry[target] = {"status": status, "statements": statements}
            app_statements = entry["app"]["statements"]
            auth = [s for s in app_statements if any(marker in s for marker in AUTH_STATEMENT_MARKERS)]
            entry["app_auth_statements"] = len(auth)
            entry["same"] = [s for s in app_statements if s not in auth] == entry["floor"]["statements"]
            report[scenario] = entry
    finally:
        query(database_url, "ALTER SYSTEM RESET log_statement")
        query(database_url, "SELECT pg_reload_conf()")
    return report


def print_parity(report: Mapping[str, Any]) -> list[str]:
    """Print the SQL check; return the scenarios whose statements differ."""
    print("\nSQL per request (PostgreSQL statement log, 2nd of two requests, app vs floor):")
    different = []
    for scenario, entry in report.items():
        app, floor = entry["app"], entry["floor"]
        auth = entry["app_auth_statements"]
        note = f" + {auth} authentication statement(s) in the app only" if auth else ""
        verdict = "same statements" if entry["same"] else "DIFFERENT statements"
        statuses = f"HTTP {app['status']}/{floor['status']}"
        print(f"  {scenario}: {verdict} ({len(floor['statements'])} in the floor{note}); {statuses}")
        if not entry["same"]:
            different.append(scenario)
            for target in ("app", "floor"):
                for statement in entry[target]["statements"]:
                    print(f"      {target}: {statement}")
    return different


# --- sustained check -----------------------------------------------------------------------------


def sustained_check(wrk: Wrk, app: HttpServer, seconds: int, meter_roots: dict[str, int | None]) -> dict[str, Any]:
    meter = CpuMeter({"server": app.pid, **meter_roots})
    meter.start()
    streams = {"reads (get_book)": "get_book", "writes (create_book)": "create_book"}
    running = {
        name: wrk.start(
            scenario, app.base_url, duration=seconds, connections=SUSTAINED_CONNECTIONS, rate=SUSTAINED_RATE
        )
        for name, scenario in streams.items()
    }
    results: dict[str, Any] = {}
    try:
        for name, process in running.items():
            results[name] = wrk.finish(process, seconds, f"sustained-{streams[name]}")
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    cpu = meter.stop()
    total = sum(int(result["requests"]) for result in results.values())
    report: dict[str, Any] = {
        "seconds": seconds,
        "target_rps_each": SUSTAINED_RATE,
        "connections_each": SUSTAINED_CONNECTIONS,
        "server_cpu_us_per_request": per_request(cpu["server"], total),
        "server_cpu_cores": round(cpu["server"] / seconds, 2) if cpu["server"] is not None else None,
        "streams": {},
    }
    for name, result in results.items():
        errors = int(result["non2xx"]) + socket_errors(result)
        report["streams"][name] = {
            "achieved_rps": result["rps"],
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "p999_ms": result["p999_ms"],
            "requests": result["requests"],
            "non2xx": result["non2xx"],
            "socket_errors": socket_errors(result),
            "statuses": result.get("statuses", {}),
            "first_error": result.get("first_error", ""),
            "sustained": errors == 0 and float(result["rps"]) >= SUSTAINED_TOLERANCE * SUSTAINED_RATE,
        }
    return report


def print_sustained(report: Mapping[str, Any]) -> None:
    print(
        f"\nSustained check: {SUSTAINED_RATE:,} req/s of reads and {SUSTAINED_RATE:,} req/s of writes at once, "
        f"{report['seconds']} s, app only ({SUSTAINED_CONNECTIONS} connections each, paced):\n"
    )
    print("| stream | target req/s | achieved req/s | p50 | p99 | p99.9 | non-2xx | socket errors | sustained |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, stream in report["streams"].items():
        print(
            f"| {name} | {SUSTAINED_RATE:,} | {stream['achieved_rps']:,.0f} | {stream['p50_ms']:.1f} ms "
            f"| {stream['p99_ms']:.1f} ms | {stream['p999_ms']:.1f} ms | {stream['non2xx']:,} "
            f"| {stream['socket_errors']:,} | {'yes' if stream['sustained'] else 'NO'} |"
        )
    print(
        f"\nServer CPU during the check: {_number(report['server_cpu_cores'], 2)} cores, "
        f"{_number(report['server_cpu_us_per_request'])} µs per request."
    )


# --- main ----------------------------------------------------------------------------------------


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def logs_directory(output: Path) -> Path:
    """Where wrk's outputs and the servers' logs go: ``latest.json`` -> ``latest-logs/``."""
    return output.with_name(output.stem + "-logs")


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def run(options: Options, stack: contextlib.ExitStack) -> int:
    started = time.monotonic()
    wrk_binary = shutil.which("wrk")
    if wrk_binary is None:
        raise RunError("wrk is not installed (Debian: apt-get install wrk)")
    busy = cpu_busy_fraction()
    if busy > 0.2:
        print(f"warning: the CPUs were {busy:.0%} busy in the second before the run: something else is running")
    temp = Path(tempfile.mkdtemp(prefix="bookstore-bench-"))
    stack.callback(shutil.rmtree, temp, True)
    logs = logs_directory(options.output)
    logs.mkdir(parents=True, exist_ok=True)  # files of an earlier run are overwritten, never deleted

    # PostgreSQL
    data_dir = temp / "data"
    pg_log: Path | None = None
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url:
        print("Database: DATABASE_URL (must be a throwaway database: the run adds books and a user)")
    else:
        import logging
        import warnings

        from bookstore.core.database import embedded_postgres

        logging.getLogger("pgserver").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        database_url = stack.enter_context(embedded_postgres(data_dir))
        pg_log = data_dir / "postgres" / "log"
        print(f"Database: embedded PostgreSQL in {data_dir}")
    postgres_root = postmaster_pid(data_dir)

    redis_service, redis_url = start_redis(temp / "redis")
    stack.callback(redis_service.stop)
    print(f"Redis:    {redis_url}")
    env = server_environment(database_url, redis_url, data_dir)

    # Schema, books, admin
    run_command(bookstore("migrate"), env)
    if query(database_url, "SELECT count(*) FROM book")[0][0]:
        raise RunError("the book table is not empty: give DATABASE_URL a fresh, throwaway database")
    step = time.monotonic()
    run_command(bookstore("seed", "--books", str(BOOK_COUNT), "--seed", str(SEED)), env)
    min_id, max_id, count = query(database_url, "SELECT min(id), max(id), count(*) FROM book")[0]
    if count != BOOK_COUNT or max_id - min_id + 1 != BOOK_COUNT:
        raise RunError(f"seeding gave {count} books with ids {min_id}..{max_id}")
    print(f"Seeded:   {count:,} books, ids {min_id}..{max_id} ({time.monotonic() - step:.1f} s)")
    email, password = f"bench-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(18)
    created = run_command(bookstore("createsuperuser", "--email", email, "--password", password), env)
    found = re.search(r"\(id (\d+)\)", created)
    if found is None:
        raise RunError(f"cannot read the admin's id from: {created}")
    admin_id = int(found.group(1))
    skip = {row[0] for row in query(database_url, "SELECT isbn FROM book WHERE isbn LIKE '979%'")}
    skip_file = temp / "existing-isbns.txt"
    skip_file.write_text("".join(f"{isbn}\n" for isbn in sorted(skip)))

    # The app, then the floor with the same Granian serving options
    app_port = free_port()
    app = HttpServer(
        "bookstore serve",
        bookstore("serve", "--host", LOOPBACK, "--port", str(app_port), "--workers", str(options.workers)),
        env,
        logs / "app.log",
        app_port,
    )
    stack.callback(app.stop)
    app.wait_until_ready("/health/ready")
    login = httpx.post(app.base_url + "/api/v1/auth/login", json={"email": email, "password": password}, timeout=30.0)
    if login.status_code != 200:
        raise RunError(f"login failed: {login.status_code} {login.text}")
    token = login.json()["access_token"]
    if app.granian_master() == app.pid or len(app.workers()) != options.workers:
        raise RunError(f"expected {options.workers} Granian workers under bookstore serve, found {app.workers()}")
    flags = list(FLOOR_GRANIAN_FLAGS)
    floor_port = free_port()
    floor = HttpServer(
        "floor",
        [
            sys.executable,
            "-m",
            "granian",
            *flags,
            "--interface",
            "rsgi",
            "--workers",
            str(options.workers),
            "--host",
            LOOPBACK,
            "--port",
            str(floor_port),
            "benchmarks.floor:app",
        ],
        {**env, "FLOOR_CREATOR_ID": str(admin_id)},
        logs / "floor.log",
        floor_port,
    )
    stack.callback(floor.stop)
    floor.wait_until_ready("/health")
    floor.wait_until_ready(f"/api/v1/books/{min_id}")
    if len(floor.workers()) != options.workers:
        raise RunError(f"expected {options.workers} Granian workers of the floor, found {floor.workers()}")
    print(f"App:      {app.base_url} ({len(app.workers())} Granian workers)")
    print(f"Floor:    {floor.base_url} ({len(floor.workers())} Granian workers)")
    print(f"Setup took {time.monotonic() - started:.1f} s.")

    failures: list[str] = []
    parity: dict[str, Any] | None = None
    if pg_log is not None and pg_log.exists():
        parity = check_sql_parity(database_url, pg_log, {"app": app, "floor": floor}, token, skip)
        for scenario in print_parity(parity):
            print(f"warning: the floor's SQL for {scenario} differs from the app's; update benchmarks/floor.py")
        for scenario, entry in parity.items():
            for target in ("app", "floor"):
                if not 200 <= entry[target]["status"] < 300:
                    failures.append(f"SQL check: {scenario} on the {target} answered {entry[target]['status']}")
    else:
        print("\nSQL check skipped: only with the embedded PostgreSQL (it reads the server's log).")

    wrk = Wrk(wrk_binary, token, min_id, max_id, skip_file, logs)
    meter_roots = {"postgres": postgres_root, "redis": redis_service.pid}
    document: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "options": {**asdict(options), "output": str(options.output)},
        "machine": {**machine(), "cpu_busy_before_run": round(busy, 3)},
        "git": git_state(),
        "versions": versions(wrk_binary, database_url),
        "floor_granian_flags": flags,
        "sql_check": parity,
        "results": [],
        "sustained": None,
        "failures": failures,
    }
    measurements: list[Measurement] = []
    print(
        f"\nwrk -t1 -c{options.connections}: {options.warmup} s warm-up, then {options.duration} s measured, "
        "app then floor, for each scenario."
    )
    for scenario in options.scenarios:
        pair = {}
        for target, server in (("app", app), ("floor", floor)):
            for service in (app, floor, redis_service):
                if not service.alive():
                    raise RunError(f"{service.name} died:\n{service.log_tail()}")
            m = measure(wrk, server, target, scenario, meter_roots, options)
            pair[target] = m
            print(
                f"  {scenario:<12} {target:<5} {m.rps:>9,.0f} req/s  p50 {m.p50_ms:6.1f} ms  p99 {m.p99_ms:7.1f} ms  "
                f"non-2xx {m.non2xx}"
            )
            bad = m.non2xx + m.warmup_non2xx + m.socket_errors
            if bad:
                failures.append(
                    f"{scenario} on the {target}: {m.non2xx} non-2xx ({m.warmup_non2xx} more in the warm-up), "
                    f"{m.socket_errors} socket errors; statuses {m.statuses}; first: {m.first_error!r}"
                )
        if pair["floor"].rps:
            pair["app"].ratio_to_floor = round(pair["app"].rps / pair["floor"].rps, 3)
            pair["floor"].ratio_to_floor = 1.0
        measurements.extend(pair.values())
        document["results"] = [asdict(m) for m in measurements]
        write_json(options.output, document)

    print(f"\n{markdown_table(measurements)}\n")
    print(
        "ratio to floor = app requests/s ÷ floor requests/s. CPU per request: utime+stime of every process of the "
        "server's tree (PostgreSQL's and Redis's trees separately) during the measured run ÷ requests. Peak RSS: "
        "VmHWM of each Granian worker."
    )

    if options.sustained_seconds is not None:
        report = sustained_check(wrk, app, options.sustained_seconds, meter_roots)
        document["sustained"] = report
        print_sustained(report)
        for name, stream in report["streams"].items():
            if not stream["sustained"]:
                failures.append(
                    f"sustained {name}: {stream['achieved_rps']:.0f} of {SUSTAINED_RATE} req/s, "
                    f"{stream['non2xx']} non-2xx, {stream['socket_errors']} socket errors; "
                    f"statuses {stream['statuses']}; first: {stream['first_error']!r}"
                )

    document["failures"] = failures
    document["passed"] = not failures
    document["elapsed_s"] = round(time.monotonic() - started, 1)
    write_json(options.output, document)
    print(f"\nResults: {options.output}; logs: {logs}")
    if failures:
        print("\nFAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print(f"\nPassed ({document['elapsed_s']:.0f} s).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    stack = contextlib.ExitStack()
    try:
        return run(options, stack)
    except (RunError, httpx.HTTPError, OSError, asyncpg.PostgresError) as error:
        print(f"\nerror: {type(error).__name__}: {error}", file=sys.stderr)
        print(f"(server logs: {logs_directory(options.output)})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything that was started", file=sys.stderr)
        return 130
    finally:
        # Servers, Redis and PostgreSQL stop here, in reverse order of start; a second Ctrl-C
        # must not cut that short.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            stack.close()
        finally:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
