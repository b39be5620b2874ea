"""BOOKSTORE_DB_STATEMENT_CACHE_SIZE: asyncpg's prepared-statement cache on the pool's connections.

With 0 the service names no statement on the server, which is what PgBouncer in transaction
pooling mode (before 1.21, or with ``max_prepared_statements = 0``) needs: there a statement
prepared on one server connection is gone once the next transaction runs on another. The service
is exercised end to end with the cache off, directly on PostgreSQL and through a real PgBouncer.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pwd
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
import httpx
import pytest

from bookstore.settings import SettingsError, load_settings
from bookstore.testing import LOOPBACK, ServerError, ServerProcess, free_port
from tests.helpers import PASSWORD, bearer, book_payload, unique_email
from tests.servers import BookstoreProcess, skip_absent_tool, statement_log

SECRET = "s" * 64
CACHE_OFF = {"BOOKSTORE_DB_STATEMENT_CACHE_SIZE": "0"}
# How PostgreSQL logs a statement run through the extended protocol: "execute <name>: <sql>",
# where the name of an unnamed statement is "<unnamed>".
_EXECUTE = re.compile(r"LOG:\s+execute ([^:]*): (.*)$", re.MULTILINE)
_CONCURRENT_READS = 40


# --- the setting ----------------------------------------------------------------------------------


def test_statement_cache_size_defaults_to_asyncpgs_own_default(tmp_path: Path) -> None:
    asyncpg_default = inspect.signature(asyncpg.connect).parameters["statement_cache_size"].default
    settings = load_settings({"BOOKSTORE_SECRET_KEY": SECRET, "BOOKSTORE_DATA_DIR": str(tmp_path)})
    assert settings.db_statement_cache_size == asyncpg_default == 100


def test_statement_cache_size_zero_is_read_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings({"BOOKSTORE_SECRET_KEY": SECRET, "BOOKSTORE_DATA_DIR": str(tmp_path), **CACHE_OFF})
    assert settings.db_statement_cache_size == 0


@pytest.mark.parametrize("value", ["-1", "10001", "off"])
def test_statement_cache_size_outside_its_bounds_is_refused(tmp_path: Path, value: str) -> None:
    environ = {
        "BOOKSTORE_SECRET_KEY": SECRET,
        "BOOKSTORE_DATA_DIR": str(tmp_path),
        "BOOKSTORE_DB_STATEMENT_CACHE_SIZE": value,
    }
    with pytest.raises(SettingsError, match="BOOKSTORE_DB_STATEMENT_CACHE_SIZE"):
        load_settings(environ)


# --- the service without the cache ----------------------------------------------------------------


def exercise_books(base_url: str) -> None:
    """Register, log in, and create, read, list, update and delete a book, checking every answer."""
    with httpx.Client(base_url=base_url, timeout=10.0) as http:
        email = unique_email()
        registered = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        headers = bearer(login.json()["access_token"])
        me = http.get("/api/v1/users/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["email"] == email

        payload = book_payload(title="Kindred", price="11.00")
        created = http.post("/api/v1/books", json=payload, headers=headers)
        assert created.status_code == 201, created.text
        book = created.json()
        book_path = f"/api/v1/books/{book['id']}"

        fetched = http.get(book_path)
        assert fetched.status_code == 200, fetched.text
        assert fetched.json() == book
        listed = http.get("/api/v1/books", params={"isbn": payload["isbn"]})
        assert listed.status_code == 200, listed.text
        assert [item["id"] for item in listed.json()["items"]] == [book["id"]]

        conditional = {**headers, "If-Match": created.headers["etag"]}
        updated = http.patch(book_path, json={"price": "7.25"}, headers=conditional)
        assert updated.status_code == 200, updated.text
        assert updated.json()["price"] == "7.25"
        assert http.get(book_path).json()["price"] == "7.25"

        deleted = http.delete(book_path, headers=headers)
        assert deleted.status_code == 204, deleted.text
        assert http.get(book_path).status_code == 404


async def concurrent_reads(base_url: str, count: int) -> list[int]:
    """The statuses of ``count`` concurrent reads of the catalogue and of the readiness probe."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        paths = ["/api/v1/books", "/health/ready"] * (count // 2)
        return [response.status_code for response in await asyncio.gather(*(http.get(path) for path in paths))]


def test_without_the_cache_the_service_runs_only_unnamed_statements(tmp_path: Path, database_url: str) -> None:
    with statement_log(database_url) as log:
        server = BookstoreProcess(tmp_path, env=CACHE_OFF)
        try:
            offset = log.log.stat().st_size
            with log.capture() as statements:
                exercise_books(server.base_url)
        finally:
            server.stop()
    assert any(statement.startswith("INSERT INTO book") for statement in statements), statements
    # PostgreSQL's log since the block began: its own markers aside, the service's statements.
    executed = [
        (name, sql.strip())
        for name, sql in _EXECUTE.findall(log.log.read_bytes()[offset:].decode(errors="replace"))
        if sql.strip() in statements
    ]
    assert executed
    assert {name for name, _ in executed} == {"<unnamed>"}, executed


# --- behind PgBouncer ---------------------------------------------------------------------------


def pgbouncer_binary() -> str:
    """Path of ``pgbouncer`` (Debian installs it in /usr/sbin); skips the test without it, except
    under CI, where .ci/run installs it and its absence fails."""
    path = shutil.which("pgbouncer", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is not None:
        return path
    skip_absent_tool("pgbouncer is not installed (Debian: apt-get install pgbouncer)")


class PgBouncer(ServerProcess):
    """PgBouncer in transaction pooling mode on a free loopback port, in front of ``database_url``,
    with ``pool_size`` server connections; clients connect to ``url`` without a password."""

    def __init__(self, binary: str, directory: Path, database_url: str, *, pool_size: int) -> None:
        parts = urlsplit(database_url)
        host = parts.hostname or parse_qs(parts.query)["host"][0]
        user, database = unquote(parts.username or "postgres"), parts.path.lstrip("/") or "postgres"
        server = {"host": host, "port": str(parts.port or 5432), "dbname": database, "user": user}
        if parts.password:
            server["password"] = unquote(parts.password)
        self.port = free_port()
        self.url = f"postgresql://{user}@{LOOPBACK}:{self.port}/{database}"
        directory.mkdir(parents=True, exist_ok=True)
        users = directory / "users.txt"
        users.write_text(f'"{user}" ""\n')
        connection = " ".join(f"{key}='{value}'" for key, value in server.items())
        config = directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{database} = {connection}\n"
            "[pgbouncer]\n"
            f"listen_addr = {LOOPBACK}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            # The service sets statement_timeout as a startup parameter, which PgBouncer refuses
            # unless told to ignore it (deploy/README.md says how to keep the timeout).
            "ignore_startup_parameters = statement_timeout\n"
            # Drop every prepared statement when a transaction ends: PgBouncer's documented way
            # to turn the random breakage of session state under transaction pooling into
            # breakage every time, so no test depends on which server connection comes next.
            "server_reset_query = DEALLOCATE ALL\n"
            "server_reset_query_always = 1\n"
        )
        # PgBouncer refuses to run as root; as root it takes a user who can reach PostgreSQL:
        # the owner of the Unix socket's directory (the embedded server's), else nobody.
        as_user = []
        if os.geteuid() == 0:
            as_user = ["-u", pwd.getpwuid(Path(host).stat().st_uid).pw_name if host.startswith("/") else "nobody"]
        super().__init__("pgbouncer", [binary, *as_user, str(config)], env=os.environ, log=directory / "pgbouncer.log")

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        """Return once PgBouncer accepts connections on its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        raise ServerError(f"pgbouncer did not listen within {timeout:.0f} s:\n{self.log_tail()}")


@pytest.fixture(scope="module")
def pgbouncer(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[PgBouncer]:
    # Two server connections for up to four of the service's: transactions of different clients
    # share server connections, as they do in production.
    bouncer = PgBouncer(pgbouncer_binary(), tmp_path_factory.mktemp("pgbouncer"), database_url, pool_size=2)
    bouncer.start()
    yield bouncer
    bouncer.stop()


def test_without_the_cache_the_service_works_through_pgbouncer_transaction_pooling(
    tmp_path: Path, pgbouncer: PgBouncer
) -> None:
    server = BookstoreProcess(tmp_path, env={"DATABASE_URL": pgbouncer.url, **CACHE_OFF})
    try:
        exercise_books(server.base_url)
        statuses = asyncio.run(concurrent_reads(server.base_url, _CONCURRENT_READS))
    finally:
        server.stop()
    assert statuses == [200] * _CONCURRENT_READS, statuses
    assert "Traceback" not in server.output(), server.log_tail()


def test_with_the_default_cache_transaction_pooling_loses_the_services_statements(
    tmp_path: Path, pgbouncer: PgBouncer
) -> None:
    # What the setting is for: the same service and PgBouncer, the cache left on.
    server = BookstoreProcess(tmp_path, env={"DATABASE_URL": pgbouncer.url})
    try:
        statuses = asyncio.run(concurrent_reads(server.base_url, _CONCURRENT_READS))
    finally:
        server.stop()
    assert statuses.count(200) < _CONCURRENT_READS, statuses
    assert re.search(r'prepared statement "__asyncpg_stmt_\w+__" does not exist', server.output())
