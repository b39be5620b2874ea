"""What the benchmark starts and prepares beyond the shared launchers of :mod:`bookstore.testing`:
the app's production settings for the run, its data and admin (through the ``bookstore``
commands), the one login, and the floor server, served by Granian with the app's options.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from benchmarks import REPO, RunError
from bookstore.testing import LOOPBACK, BookstoreServer, HttpServer, clean_environment, fetch_rows, free_port

__all__ = [
    "DEFAULT_BOOKS",
    "FLOOR_GRANIAN_FLAGS",
    "PASSTHROUGH",
    "READY_TIMEOUT_SECONDS",
    "SEED",
    "STOCK",
    "STOP_TIMEOUT_SECONDS",
    "app_server",
    "create_admin",
    "floor_server",
    "log_in",
    "run_bookstore",
    "seed_books",
    "server_environment",
]

DEFAULT_BOOKS = 10_000
SEED = 1
# Copies of every seeded book, so that no order of create_order is ever refused: each book gets
# about 1/N of the orders, and even at the smallest catalogue (100 books) and 10,000 orders/s a
# run would need hours to sell one out.
STOCK = 1_000_000
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 40.0
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


def server_environment(database_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of the app, its commands and the floor: production, rate limiting on."""
    env = clean_environment(keep=PASSTHROUGH)
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


def run_bookstore(env: Mapping[str, str], *args: str, timeout: float = 600) -> str:
    """Run ``python -m bookstore <args>`` to completion; its output, or RunError with the output."""
    argv = [sys.executable, "-m", "bookstore", *args]
    try:
        done = subprocess.run(  # noqa: S603 - our own command, no shell
            argv, env=dict(env), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise RunError(f"`{' '.join(argv[1:])}` took more than {timeout:.0f} s") from error
    if done.returncode != 0:
        raise RunError(f"`{' '.join(argv[1:])}` failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def seed_books(database_url: str, env: dict[str, str], books: int) -> tuple[int, int]:
    """Migrate, seed ``books`` books with ``STOCK`` copies each into the empty book table, then
    VACUUM ANALYZE it (the planner needs the statistics of the seeded table, and index-only scans
    its visibility map); the ids of the books, first and last."""
    run_bookstore(env, "migrate")
    if fetch_rows(database_url, "SELECT count(*) FROM book")[0][0]:
        raise RunError("the book table is not empty: give DATABASE_URL a fresh, throwaway database")
    step = time.monotonic()
    # Room for a row-by-row seeder at a million books too; COPY needs far less.
    seed_args = ("--books", str(books), "--seed", str(SEED), "--stock", str(STOCK))
    run_bookstore(env, "seed", *seed_args, timeout=600 + books / 1000)
    seeded = time.monotonic() - step
    min_id, max_id, count, min_stock = fetch_rows(
        database_url, "SELECT min(id), max(id), count(*), min(stock) FROM book"
    )[0]
    if count != books or max_id - min_id + 1 != books:
        raise RunError(f"seeding gave {count} books with ids {min_id}..{max_id}")
    if min_stock != STOCK:
        raise RunError(f"a seeded book has {min_stock} copies, not {STOCK:,}")
    step = time.monotonic()
    # Cheap when the seeder has already done it: VACUUM skips all-visible pages, ANALYZE samples.
    fetch_rows(database_url, "VACUUM ANALYZE book")
    print(
        f"Seeded:   {count:,} books, ids {min_id}..{max_id}, {STOCK:,} copies each ({seeded:.1f} s; "
        f"VACUUM ANALYZE {time.monotonic() - step:.1f} s)"
    )
    return min_id, max_id


def create_admin(env: dict[str, str]) -> tuple[int, str, str]:
    """A superuser with a random email and password: its id, email and password."""
    email, password = f"bench-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(18)
    created = run_bookstore(env, "createsuperuser", "--email", email, "--password", password)
    found = re.search(r"\(id (\d+)\)", created)
    if found is None:
        raise RunError(f"cannot read the admin's id from: {created}")
    return int(found.group(1)), email, password


def log_in(app: HttpServer, email: str, password: str) -> str:
    """An access token; the one login of the run."""
    login = httpx.post(app.base_url + "/api/v1/auth/login", json={"email": email, "password": password}, timeout=30.0)
    if login.status_code != 200:
        raise RunError(f"login failed: {login.status_code} {login.text}")
    token: str = login.json()["access_token"]
    return token


def app_server(env: Mapping[str, str], log: Path, workers: int) -> BookstoreServer:
    """``bookstore serve --workers N`` (not started yet)."""
    return BookstoreServer(
        env,
        log,
        workers=workers,
        cwd=REPO,
        ready_timeout=READY_TIMEOUT_SECONDS,
        stop_timeout=STOP_TIMEOUT_SECONDS,
    )


def floor_server(env: Mapping[str, str], log: Path, workers: int, user_id: int) -> HttpServer:
    """The floor (``benchmarks/floor.py``) under Granian, its books and orders owned by ``user_id``
    (not started yet)."""
    port = free_port()
    argv = [sys.executable, "-m", "granian", *FLOOR_GRANIAN_FLAGS, "--interface", "rsgi"]
    return HttpServer(
        "floor",
        [*argv, "--workers", str(workers), "--host", LOOPBACK, "--port", str(port), "benchmarks.floor:app"],
        port=port,
        env={**env, "FLOOR_USER_ID": str(user_id)},
        log=log,
        ready_path="/health",
        cwd=REPO,
        ready_timeout=READY_TIMEOUT_SECONDS,
        stop_timeout=STOP_TIMEOUT_SECONDS,
    )
