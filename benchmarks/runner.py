"""The benchmark runner: ``uv run python -m benchmarks [--smoke] [...]``.

Starts everything it measures on loopback (an embedded PostgreSQL unless ``DATABASE_URL`` is set,
a private redis-server, ``bookstore serve`` in production mode and the RSGI floor of
``benchmarks/floor.py``), seeds ``--books`` books (10,000 by default) and an admin, prepares the
search words and deep page cursors, uploads covers to some books, then for each scenario runs wrk
against the app and against
the floor: a warm-up, then a measured run with the servers' CPU time and the workers' peak memory
read from /proc. Prints a Markdown table, writes JSON, and finally checks that the app sustains
1,000 reads/s and 1,000 writes/s at once. Exit code 1 when any response was not 2xx (app or
floor), a wrk run failed, or the sustained check missed its rates.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx

from benchmarks import REPO, RunError
from benchmarks.catalogue import ScenarioData, prepare_scenario_data
from benchmarks.covers import CoverSet, upload_covers
from benchmarks.measure import SUSTAINED_RATE, measure, sustained_check
from benchmarks.processes import cpu_busy_fraction, granian_master, granian_workers, workers_memory_mib
from benchmarks.report import (
    TABLE_NOTE,
    Measurement,
    git_state,
    logs_directory,
    machine,
    markdown_table,
    print_measurement,
    print_sustained,
    versions,
    write_json,
)
from benchmarks.services import (
    DEFAULT_BOOKS,
    FLOOR_GRANIAN_FLAGS,
    app_server,
    create_admin,
    floor_server,
    log_in,
    seed_books,
    server_environment,
)
from benchmarks.sql_check import check_sql_parity, print_parity
from benchmarks.wrk import SCENARIOS, Wrk, find_wrk
from bookstore.testing import (
    BookstoreServer,
    HttpServer,
    PostgresServer,
    RedisServer,
    ServerError,
    ServerProcess,
    fetch_rows,
)

__all__ = ["Options", "main", "parse_options", "run"]


# Enough for a deep page (the second half of the catalogue) and a full page after it.
MIN_BOOKS = 100


@dataclass
class Options:
    books: int
    duration: int
    warmup: int
    connections: int
    workers: int
    scenarios: list[str]
    sustained_seconds: int | None
    output: Path


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--books", type=int, default=DEFAULT_BOOKS, help=f"books to seed, ids 1..N (default {DEFAULT_BOOKS:,})"
    )
    parser.add_argument("--duration", type=int, default=20, help="seconds of each measured run (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up before each (default 5)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="Granian workers of app and floor (default 2)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {', '.join(SCENARIOS)} (run in that order; default all)",
    )
    parser.add_argument("--smoke", action="store_true", help="2 s runs after 1 s warm-ups, no sustained check")
    parser.add_argument("--sustained-seconds", type=int, default=60, help="length of the sustained check (default 60)")
    parser.add_argument("--no-sustained", action="store_true", help="skip the sustained check")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/latest.json"), help="JSON results")
    options = parser.parse_args(argv)
    chosen = {name.strip() for name in options.scenarios.split(",") if name.strip()}
    unknown = sorted(chosen - set(SCENARIOS))
    if unknown or not chosen:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    # In SCENARIOS' order, reads first: every create becomes the newest book, which the list and
    # search scenarios would then meet first.
    scenarios = [name for name in SCENARIOS if name in chosen]
    for name in ("duration", "warmup", "connections", "workers", "sustained_seconds"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if options.books < MIN_BOOKS:
        parser.error(f"--books must be at least {MIN_BOOKS}")
    if options.smoke:
        options.duration, options.warmup, options.no_sustained = 2, 1, True
    return Options(
        books=options.books,
        duration=options.duration,
        warmup=options.warmup,
        connections=options.connections,
        workers=options.workers,
        scenarios=scenarios,
        sustained_seconds=None if options.no_sustained else options.sustained_seconds,
        output=options.output if options.output.is_absolute() else REPO / options.output,
    )


# --- setup ---------------------------------------------------------------------------------------


@dataclass
class Setup:
    """What the setup started and made: servers, seeded ids, the admin's token, existing ISBNs,
    the scenarios' search words and deep cursors, and the uploaded covers."""

    database_url: str
    postgres: PostgresServer | None  # None with DATABASE_URL
    redis: RedisServer
    app: BookstoreServer
    floor: HttpServer
    token: str
    min_id: int
    max_id: int
    existing_isbns: set[str]
    skip_file: Path
    data: ScenarioData
    covers: CoverSet | None  # None when get_cover is not run


def start_database(stack: contextlib.ExitStack, data_dir: Path) -> tuple[str, PostgresServer | None]:
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url:
        print("Database: DATABASE_URL (must be a throwaway database: the run adds books and a user)")
        return database_url, None
    postgres = stack.enter_context(PostgresServer(data_dir))
    print(f"Database: embedded PostgreSQL in {data_dir}")
    return postgres.url, postgres


def set_up(options: Options, stack: contextlib.ExitStack, temp: Path, logs: Path) -> Setup:
    """PostgreSQL, Redis, the data and the admin, then the app and the floor, all on ``stack``."""
    data_dir = temp / "data"
    database_url, postgres = start_database(stack, data_dir)
    redis_server = stack.enter_context(RedisServer(temp / "redis"))
    print(f"Redis:    {redis_server.url}")
    env = server_environment(database_url, redis_server.url, data_dir)

    min_id, max_id = seed_books(database_url, env, options.books)
    admin_id, email, password = create_admin(env)
    existing = {row[0] for row in fetch_rows(database_url, "SELECT isbn FROM book WHERE isbn LIKE '979%'")}
    skip_file = temp / "existing-isbns.txt"
    skip_file.write_text("".join(f"{isbn}\n" for isbn in sorted(existing)))
    step = time.monotonic()
    data = prepare_scenario_data(database_url, env, options.books, temp)
    print(
        f"Prepared: {len(data.words)} search words, {len(data.cursors)} cursors of pages deep in the catalogue "
        f"({time.monotonic() - step:.1f} s)"
    )

    # The app, then the floor with the same Granian serving options
    app = stack.enter_context(app_server(env, logs / "app.log", options.workers))
    token = log_in(app, email, password)
    if granian_master(app.pid) == app.pid or len(granian_workers(app.pid)) != options.workers:
        found = granian_workers(app.pid)
        raise RunError(f"expected {options.workers} Granian workers under bookstore serve, found {found}")
    floor = stack.enter_context(floor_server(env, logs / "floor.log", options.workers, admin_id))
    floor.wait_until_ready(f"/api/v1/books/{min_id}")
    if len(granian_workers(floor.pid)) != options.workers:
        raise RunError(f"expected {options.workers} Granian workers of the floor, found {granian_workers(floor.pid)}")
    print(f"App:      {app.base_url} ({len(granian_workers(app.pid))} Granian workers)")
    print(f"Floor:    {floor.base_url} ({len(granian_workers(floor.pid))} Granian workers)")
    covers = None
    # Only for get_cover: decoding the uploads loads Pillow into the workers and raises their peak
    # RSS, which the table reports for every scenario of the run.
    if "get_cover" in options.scenarios:
        step, peak_before = time.monotonic(), workers_memory_mib(app.pid, "VmHWM")
        # Through the API, so the files and rows are the app's own.
        covers = upload_covers(app, token, min_id, max_id, temp)
        peaks = [" / ".join(f"{mib:.0f}" for mib in peak) for peak in (peak_before, workers_memory_mib(app.pid))]
        print(
            f"Covers:   {len(covers.urls)} JPEGs of {min(covers.sizes):,}-{max(covers.sizes):,} bytes uploaded "
            f"({time.monotonic() - step:.1f} s; app workers' peak RSS {peaks[0]} -> {peaks[1]} MiB)"
        )
    return Setup(
        database_url, postgres, redis_server, app, floor, token, min_id, max_id, existing, skip_file, data, covers
    )


# --- the run -------------------------------------------------------------------------------------


def sql_check(setup: Setup, failures: list[str]) -> dict[str, Any] | None:
    """The SQL check (embedded PostgreSQL only); non-2xx answers are added to ``failures``."""
    if setup.postgres is None:
        print("\nSQL check skipped: only with the embedded PostgreSQL (it reads the server's log).")
        return None
    servers = {"app": setup.app, "floor": setup.floor}
    parity = check_sql_parity(
        setup.database_url,
        servers,
        setup.token,
        setup.existing_isbns,
        setup.data,
        setup.covers.urls[0] if setup.covers else None,
    )
    for scenario in print_parity(parity):
        print(f"warning: the floor's SQL, rows or response for {scenario} differ from the app's; update floor.py")
    for scenario, entry in parity.items():
        for target in ("app", "floor"):
            if not 200 <= entry[target]["status"] < 300:
                failures.append(f"SQL check: {scenario} on the {target} answered {entry[target]['status']}")
    return parity


def measure_scenarios(
    options: Options, setup: Setup, wrk: Wrk, meter_roots: dict[str, int | None], document: dict[str, Any]
) -> list[Measurement]:
    """Each scenario on the app, then on the floor; the JSON is rewritten after each scenario."""
    measurements: list[Measurement] = []
    print(
        f"\nwrk -t1 -c{options.connections}: {options.warmup} s warm-up, then {options.duration} s measured, "
        "app then floor, for each scenario."
    )
    for scenario in options.scenarios:
        pair = {}
        for target, server in (("app", setup.app), ("floor", setup.floor)):
            check_alive(setup.app, setup.floor, setup.redis)
            m = measure(
                wrk,
                server,
                target,
                scenario,
                meter_roots,
                warmup=options.warmup,
                duration=options.duration,
                connections=options.connections,
            )
            pair[target] = m
            print_measurement(m)
            if m.non2xx + m.warmup_non2xx + m.socket_errors:
                document["failures"].append(
                    f"{scenario} on the {target}: {m.non2xx} non-2xx ({m.warmup_non2xx} more in the warm-up), "
                    f"{m.socket_errors} socket errors; statuses {m.statuses}; first: {m.first_error!r}"
                )
        if pair["floor"].rps:
            pair["app"].ratio_to_floor = round(pair["app"].rps / pair["floor"].rps, 3)
            pair["floor"].ratio_to_floor = 1.0
        measurements.extend(pair.values())
        document["results"] = [asdict(m) for m in measurements]
        write_json(options.output, document)
    return measurements


def check_alive(*services: ServerProcess) -> None:
    for service in services:
        if not service.alive():
            raise RunError(f"{service.name} died:\n{service.log_tail()}")


def run_sustained_check(
    options: Options, setup: Setup, wrk: Wrk, meter_roots: dict[str, int | None], document: dict[str, Any]
) -> None:
    if options.sustained_seconds is None:
        return
    report = sustained_check(wrk, setup.app, options.sustained_seconds, meter_roots)
    document["sustained"] = report
    print_sustained(report)
    for name, stream in report["streams"].items():
        if not stream["sustained"]:
            document["failures"].append(
                f"sustained {name}: {stream['achieved_rps']:.0f} of {SUSTAINED_RATE} req/s, "
                f"{stream['non2xx']} non-2xx, {stream['socket_errors']} socket errors; "
                f"statuses {stream['statuses']}; first: {stream['first_error']!r}"
            )


def finish(options: Options, document: dict[str, Any], started: float, logs: Path) -> int:
    """Write the final JSON, list the failures; the exit code."""
    failures = document["failures"]
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


def run(options: Options, stack: contextlib.ExitStack) -> int:
    started = time.monotonic()
    wrk_binary = find_wrk()
    busy = cpu_busy_fraction()
    if busy > 0.2:
        print(f"warning: the CPUs were {busy:.0%} busy in the second before the run: something else is running")
    temp = Path(tempfile.mkdtemp(prefix="bookstore-bench-"))
    stack.callback(shutil.rmtree, temp, True)
    logs = logs_directory(options.output)
    logs.mkdir(parents=True, exist_ok=True)  # files of an earlier run are overwritten, never deleted

    setup = set_up(options, stack, temp, logs)
    print(f"Setup took {time.monotonic() - started:.1f} s.")
    failures: list[str] = []
    parity = sql_check(setup, failures)
    document: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks", *sys.argv[1:]]),
        "options": {**asdict(options), "output": str(options.output)},
        "machine": {**machine(), "cpu_busy_before_run": round(busy, 3)},
        "git": git_state(),
        "versions": versions(wrk_binary, setup.database_url),
        "floor_granian_flags": list(FLOOR_GRANIAN_FLAGS),
        "catalogue": {"books": options.books, "min_id": setup.min_id, "max_id": setup.max_id},
        "sql_check": parity,
        "results": [],
        "sustained": None,
        "failures": failures,
    }

    data = setup.data
    wrk = Wrk(
        wrk_binary,
        setup.token,
        setup.min_id,
        setup.max_id,
        setup.skip_file,
        data.words_file,
        data.cursors_file,
        setup.covers.urls_file if setup.covers else None,
        logs,
    )
    meter_roots = {"postgres": setup.postgres.pid if setup.postgres else None, "redis": setup.redis.pid}
    measurements = measure_scenarios(options, setup, wrk, meter_roots, document)
    print(f"\nCatalogue of {options.books:,} books.\n\n{markdown_table(measurements)}\n")
    print(TABLE_NOTE)
    run_sustained_check(options, setup, wrk, meter_roots, document)
    return finish(options, document, started, logs)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    stack = contextlib.ExitStack()
    try:
        return run(options, stack)
    except (RunError, ServerError, httpx.HTTPError, OSError, asyncpg.PostgresError) as error:
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
