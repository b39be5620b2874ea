"""The ``bookstore`` command: serve, admin, migrate, createsuperuser, seed, openapi.

Without ``DATABASE_URL`` every command uses a private embedded PostgreSQL under the data
directory (``BOOKSTORE_DATA_DIR``, default ``./.bookstore``), started and stopped by the command.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click
import msgspec

from bookstore.books.schemas import MAX_STOCK
from bookstore.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

APP_FACTORY = "bookstore.app:create_app"
ADMIN_FACTORY = "bookstore.admin.app:create_admin_app_from_environment"
DEFAULT_ADMIN_PORT = 8001
# Open files a worker needs besides its client connections: database pool, Redis, logs, modules.
_FILE_HEADROOM = 256
# `serve` options that override a setting for this run, by the setting's environment variable.
_SERVE_OVERRIDES = {
    "header_read_timeout": "BOOKSTORE_HEADER_READ_TIMEOUT_SECONDS",
    "body_read_timeout": "BOOKSTORE_BODY_READ_TIMEOUT_SECONDS",
    "max_connections": "BOOKSTORE_MAX_CONNECTIONS_PER_WORKER",
    "backlog": "BOOKSTORE_LISTEN_BACKLOG",
    "shutdown_timeout": "BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS",
}


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def _check_admin_settings(settings: Settings, hint: str = "") -> None:
    from bookstore.admin.app import check_admin_settings

    try:
        check_admin_settings(settings)
    except SettingsError as error:
        raise click.ClickException(f"{error}{hint}") from None


def _require_free_port(host: str, port: int, option: str) -> None:
    """Refuse a port another server listens on. Granian binds with SO_REUSEPORT, so it would share
    the port (with an earlier run left behind, say) and the kernel would split the requests."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a port with connections in TIME_WAIT is free; one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on {host}:{port} ({error.strerror}); is another server there? Choose another {option}."
            ) from None


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into a normal exit so `finally` blocks stop the embedded database.
    sys.exit(128 + signum)


@contextmanager
def _database(settings: Settings) -> Iterator[str]:
    """Make ``DATABASE_URL`` point at a running database for the duration of the block."""
    if settings.database_url:
        yield settings.database_url
        return
    from bookstore.core.database import embedded_postgres

    with embedded_postgres(settings.data_dir) as url:
        os.environ["DATABASE_URL"] = url
        try:
            yield url
        finally:
            os.environ.pop("DATABASE_URL", None)


def _browsable_host(host: str) -> str:
    """The host to print in URLs: loopback for "all interfaces", IPv6 in brackets."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "127.0.0.1"
    return f"[{host}]" if address.version == 6 else host


def _raise_open_file_limit(connections: int) -> bool:
    """Raise the soft limit on open files (the workers inherit it) to fit ``connections`` client
    sockets per worker, as far as the hard limit allows; return whether they fit now.

    A worker out of file descriptors cannot accept: the connections it would hold wait in the
    backlog instead, and Granian retries the accept at once, again and again.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + _FILE_HEADROOM
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return True
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    return raised >= wanted


def _setting_default(field: str) -> object:
    return next(item.default for item in msgspec.structs.fields(Settings) if item.name == field)


def _migrate() -> None:
    from bookstore.core.database import apply_migrations

    asyncio.run(apply_migrations())


@click.group()
def main() -> None:
    """Run and administer the bookstore API."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Granian worker processes.")
@click.option(
    "--header-read-timeout",
    type=float,
    help="Seconds a client has to send a request's headers; also the keep-alive idle timeout "
    f"[default: BOOKSTORE_HEADER_READ_TIMEOUT_SECONDS or {_setting_default('header_read_timeout_seconds')}].",
)
@click.option(
    "--body-read-timeout",
    type=float,
    help="Seconds a client has to send a whole request body (else 408) "
    f"[default: BOOKSTORE_BODY_READ_TIMEOUT_SECONDS or {_setting_default('body_read_timeout_seconds')}].",
)
@click.option(
    "--max-connections",
    type=int,
    help="Client connections each worker holds open at once; more wait in the backlog "
    f"[default: BOOKSTORE_MAX_CONNECTIONS_PER_WORKER or {_setting_default('max_connections_per_worker')}].",
)
@click.option(
    "--backlog",
    type=int,
    help="Connections the listening socket queues for the workers "
    f"[default: BOOKSTORE_LISTEN_BACKLOG or {_setting_default('listen_backlog')}].",
)
@click.option(
    "--admin-port",
    default=DEFAULT_ADMIN_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Also serve the admin panel on this port, in a process of its own (`bookstore admin`); 0: do not.",
)
@click.option(
    "--shutdown-timeout",
    type=int,
    help="Seconds a worker has after SIGTERM to finish its requests and close its connections before "
    f"it is killed [default: BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS or {_setting_default('shutdown_timeout_seconds')}].",
)
def serve(host: str, port: int, workers: int, admin_port: int, **overrides: float | int | None) -> None:
    """Apply pending migrations, then serve the API with Granian (and the admin panel beside it)."""
    from bookstore.core.metrics import multiprocess_directory

    # Through the environment, so that the workers' own settings see them and one place validates.
    os.environ.update({_SERVE_OVERRIDES[name]: str(value) for name, value in overrides.items() if value is not None})
    settings = _settings()
    _require_free_port(host, port, "--port")
    if admin_port:
        if admin_port == port:
            raise click.BadParameter("must differ from --port", param_hint="--admin-port")
        _check_admin_settings(settings, hint=" (or serve without the admin panel: --admin-port 0)")
        _require_free_port(host, admin_port, "--admin-port")
    enough_files = _raise_open_file_limit(settings.max_connections_per_worker)
    # The workers' metric files go to a directory of this run's own, so a scrape sums all workers.
    with _database(settings) as url, multiprocess_directory():
        _migrate()
        where = "embedded PostgreSQL in " + str(settings.data_dir) if not settings.database_url else "DATABASE_URL"
        base = f"http://{_browsable_host(host)}:{port}"
        click.echo(f"Database: {where} ({url.split('@')[-1]})")
        click.echo(f"API:      {base}/api/v1/books")
        if settings.docs_enabled:
            click.echo(f"Docs:     {base}/docs  (OpenAPI: {base}/docs/openapi.json)")
        if admin_port:
            click.echo(
                f"Admin:    http://{_browsable_host(host)}:{admin_port}/admin/  (accounts: `bookstore createsuperuser`)"
            )
        if not settings.rate_limit_enabled:
            click.echo("Limits:   rate limiting is off (BOOKSTORE_RATE_LIMIT_ENABLED=false)")
        elif settings.redis_url:
            click.echo("Limits:   counted in Redis, shared by every worker and instance")
        else:
            click.echo("Limits:   counted per worker process (set REDIS_URL to share them)")
        click.echo(
            f"Clients:  up to {settings.max_connections_per_worker} connections per worker, headers within "
            f"{settings.header_read_timeout_seconds:g} s, bodies within {settings.body_read_timeout_seconds:g} s"
        )
        if not enough_files:
            soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            click.echo(f"Warning:  the open-file limit ({soft_limit}) is too low for that; raise `ulimit -n`")
        with _admin_process(host, admin_port):
            _serve_api(host, port, workers, settings)


@contextmanager
def _admin_process(host: str, port: int) -> Iterator[None]:
    """Run ``bookstore admin`` on ``port`` (none if 0) for the duration of the block.

    A process of its own: the admin's FastAPI, pydantic and Jinja stay out of the API's workers.
    It inherits the environment, so it finds the same database.
    """
    if port == 0:
        yield
        return
    command = [sys.executable, "-m", "bookstore", "admin", "--host", host, "--port", str(port), "--no-migrate"]
    # preexec_fn runs between fork and exec; safe here, before this process starts any thread.
    end_with_parent = _end_with_parent if sys.platform == "linux" else None
    admin = subprocess.Popen(command, preexec_fn=end_with_parent)  # noqa: S603 - our own command, no shell
    try:
        yield
    finally:
        admin.terminate()
        try:
            admin.wait(timeout=10)
        except subprocess.TimeoutExpired:
            admin.kill()
            admin.wait()


def _end_with_parent() -> None:
    """In the admin's process before it runs: have Linux send it SIGTERM when ``serve`` dies,
    even by SIGKILL, rather than leave it serving, orphaned, on its port."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _serve_api(host: str, port: int, workers: int, settings: Settings) -> None:
    from litestar.cli.main import litestar_group

    # litestar-granian's `run` supervises the Granian workers and forwards signals to them.
    litestar_group.main(
        args=[
            "--app",
            APP_FACTORY,
            "run",
            "--host",
            host,
            "--port",
            str(port),
            "--wc",
            str(workers),
            "--workers-kill-timeout",
            str(settings.shutdown_timeout_seconds),
            "--http1-header-read-timeout",
            str(max(1, round(settings.header_read_timeout_seconds * 1000))),
            "--backpressure",
            str(settings.max_connections_per_worker),
            "--backlog",
            str(settings.listen_backlog),
            # HTTP/1.1 only and no WebSockets: the API has no sockets and sits behind proxies
            # speaking HTTP/1.1; skipping the protocol detection saves ~3 % per request.
            "--http",
            "1",
            "--no-ws",
        ],
        prog_name="bookstore serve",
        standalone_mode=False,
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=DEFAULT_ADMIN_PORT, show_default=True, type=click.IntRange(1, 65535))
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Apply pending migrations first.")
def admin(host: str, port: int, migrate: bool) -> None:
    """Serve the admin panel (Piccolo admin) at /admin/, in one Granian worker."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces

    from bookstore.admin.app import ADMIN_PATH

    settings = _settings()
    _check_admin_settings(settings)
    _require_free_port(host, port, "--port")
    with _database(settings):
        if migrate:
            _migrate()
        click.echo(f"Admin:    http://{_browsable_host(host)}:{port}{ADMIN_PATH}")
        Granian(
            ADMIN_FACTORY,
            factory=True,
            interface=Interfaces.ASGI,
            address=host,
            port=port,
            workers=1,
            http=HTTPModes.http1,
            websockets=False,
            workers_kill_timeout=settings.shutdown_timeout_seconds,
        ).serve()


@main.command()
def migrate() -> None:
    """Apply pending database migrations."""
    with _database(_settings()):
        _migrate()
    click.echo("Migrations applied.")


@main.command()
@click.option("--email", required=True, help="Login email of the administrator.")
@click.option("--password", required=True, help="At least 8 characters.")
def createsuperuser(email: str, password: str) -> None:
    """Create an administrator account (non-interactive, usable from scripts)."""
    from bookstore.accounts.schemas import Credentials
    from bookstore.accounts.service import create_superuser
    from bookstore.core.errors import ConflictError
    from bookstore.core.passwords import configure_password_hasher
    from bookstore.core.validation import split_field_error

    try:
        credentials = msgspec.convert({"email": email, "password": password}, Credentials)
    except msgspec.ValidationError as error:
        message, field = split_field_error(error)
        raise click.BadParameter(f"{field or 'input'}: {message}") from None
    settings = _settings()
    configure_password_hasher(
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_cost_kib,
        parallelism=settings.argon2_parallelism,
    )
    with _database(settings):
        _migrate()
        try:
            user = asyncio.run(create_superuser(credentials.email, credentials.password))
        except ConflictError as error:
            raise click.ClickException(error.detail) from None
    click.echo(f"Created administrator {user.email} (id {user.id}).")


@main.command("sweep-covers")
@click.option(
    "--older-than",
    "older_than_minutes",
    default=60,
    show_default=True,
    type=click.IntRange(0, 365 * 24 * 60),
    help="Minutes since a file was stored: younger ones may belong to an upload still in progress.",
)
def sweep_covers(older_than_minutes: int) -> None:
    """Delete stored cover files no book names (left behind by uploads that failed midway)."""
    from bookstore.core.database import close_pool, open_pool
    from bookstore.core.storage import LocalFileStorage
    from bookstore.covers.queries import sweep_files

    settings = _settings()

    async def sweep() -> int:
        await open_pool(settings)
        try:
            return await sweep_files(LocalFileStorage(settings.covers_path), older_than_minutes * 60)
        finally:
            await close_pool()

    with _database(settings):
        _migrate()
        deleted = asyncio.run(sweep())
    click.echo(f"Deleted {deleted} unreferenced cover files.")


@main.command()
@click.option("--books", "count", default=1000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--seed", "random_seed", default=None, type=int, help="Random seed for a reproducible catalogue.")
@click.option(
    "--stock", default=0, show_default=True, type=click.IntRange(0, MAX_STOCK), help="Copies in stock of each book."
)
def seed(count: int, random_seed: int | None, stock: int) -> None:
    """Add realistic books with valid, unique ISBN-13s (for demos and benchmarks)."""
    from bookstore.books.seed import seed_books

    with _database(_settings()):
        _migrate()
        started = time.monotonic()
        added = asyncio.run(seed_books(count, random_seed, stock))
        seconds = time.monotonic() - started
    click.echo(f"Added {added} books in {seconds:.1f} s.")


@main.command()
@click.option(
    "--output",
    default="docs/openapi.json",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write; '-' for standard output.",
)
def openapi(output: Path) -> None:
    """Write the OpenAPI document (generated from the code) as JSON."""
    from bookstore.app import render_openapi_document

    document = render_openapi_document()
    if str(output) == "-":
        click.echo(document, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(document)
    click.echo(f"Wrote {output}.")
