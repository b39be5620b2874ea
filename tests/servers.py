"""Real servers for tests: the launchers of :mod:`bookstore.testing` with the tests' settings, and
a missing redis-server turned into a skip (a failure under CI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from bookstore.testing import (
    AdminServer,
    BookstoreServer,
    RedisServer,
    ServerError,
    StatementLog,
    ToolMissingError,
    clean_environment,
    free_port,
)
from bookstore.testing import redis_server_binary as find_redis_server
from bookstore.testing import statement_log as open_statement_log
from tests.helpers import TEST_SERVER_ENV

__all__ = [
    "AdminProcess",
    "BookstoreProcess",
    "RedisProcess",
    "redis_server_binary",
    "skip_absent_tool",
    "statement_log",
]


def skip_absent_tool(reason: str) -> NoReturn:
    """Skip a test whose tool this machine lacks; under CI, where .ci/run provides it, fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required under CI)")
    pytest.skip(reason)


def redis_server_binary() -> str:
    """Path of ``redis-server``; skips the test without it, except under CI where that fails."""
    try:
        return find_redis_server()
    except ToolMissingError as error:
        skip_absent_tool(str(error))


@contextmanager
def statement_log(database_url: str) -> Iterator[StatementLog]:
    """:func:`bookstore.testing.statement_log`; a database whose log this machine cannot read (a
    remote ``TEST_DATABASE_URL``) skips the test, except under CI (embedded PostgreSQL)."""
    with ExitStack() as stack:
        try:
            log = stack.enter_context(open_statement_log(database_url))
        except ServerError as error:
            skip_absent_tool(str(error))
        yield log


class RedisProcess(RedisServer):
    """:class:`~bookstore.testing.RedisServer`, built the way the tests have always built it."""

    def __init__(self, binary: str, directory: Path) -> None:
        super().__init__(directory, binary=binary)


def _server_environment(directory: Path, env: dict[str, str] | None) -> dict[str, str]:
    """The tests' settings for a server of the test database keeping its files in ``directory``."""
    return {
        **clean_environment(),
        **TEST_SERVER_ENV,
        "BOOKSTORE_DATA_DIR": str(directory / "data"),
        "BOOKSTORE_SECRET_KEY": "live-server-secret-" + "s" * 32,
        "BOOKSTORE_DB_POOL_MIN_SIZE": "1",
        "BOOKSTORE_DB_POOL_MAX_SIZE": "4",
        **(env or {}),
    }


class AdminProcess(AdminServer):
    """``bookstore admin`` on the test database with the tests' settings, started when built."""

    def __init__(self, directory: Path, *, env: dict[str, str] | None = None) -> None:
        port = free_port()
        super().__init__(_server_environment(directory, env), directory / f"admin-{port}.log", port=port)
        try:
            self.start()
        except ServerError as error:
            pytest.fail(str(error))


class BookstoreProcess(BookstoreServer):
    """``bookstore serve`` on the test database with the tests' settings, started when built."""

    def __init__(
        self, directory: Path, *, workers: int = 1, env: dict[str, str] | None = None, admin_port: int = 0
    ) -> None:
        port = free_port()
        super().__init__(
            _server_environment(directory, env),
            directory / f"bookstore-{port}.log",
            workers=workers,
            port=port,
            admin_port=admin_port,
        )
        try:
            self.start()
        except ServerError as error:
            pytest.fail(str(error))
