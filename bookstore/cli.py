"""The ``bookstore`` command: serve, migrate, createsuperuser, seed, openapi.

Without ``DATABASE_URL`` every command uses a private embedded PostgreSQL under the data
directory (``BOOKSTORE_DATA_DIR``, default ``./.bookstore``), started and stopped by the command.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click
import msgspec

from bookstore.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

APP_FACTORY = "bookstore.app:create_app"


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


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
def serve(host: str, port: int, workers: int) -> None:
    """Apply pending migrations, then serve the API with Granian."""
    from litestar.cli.main import litestar_group

    settings = _settings()
    with _database(settings) as url:
        _migrate()
        where = "embedded PostgreSQL in " + str(settings.data_dir) if not settings.database_url else "DATABASE_URL"
        base = f"http://{_browsable_host(host)}:{port}"
        click.echo(f"Database: {where} ({url.split('@')[-1]})")
        click.echo(f"API:      {base}/api/v1/books")
        if settings.docs_enabled:
            click.echo(f"Docs:     {base}/docs  (OpenAPI: {base}/docs/openapi.json)")
        if not settings.rate_limit_enabled:
            click.echo("Limits:   rate limiting is off (BOOKSTORE_RATE_LIMIT_ENABLED=false)")
        elif settings.redis_url:
            click.echo("Limits:   counted in Redis, shared by every worker and instance")
        else:
            click.echo("Limits:   counted per worker process (set REDIS_URL to share them)")
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
                "20",
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


@main.command()
@click.option("--books", "count", default=1000, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--seed", "random_seed", default=None, type=int, help="Random seed for a reproducible catalogue.")
def seed(count: int, random_seed: int | None) -> None:
    """Add realistic books with valid, unique ISBN-13s (for demos and benchmarks)."""
    from bookstore.books.seed import seed_books

    with _database(_settings()):
        _migrate()
        added = asyncio.run(seed_books(count, random_seed))
    click.echo(f"Added {added} books.")


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
