"""PostgreSQL for tests and benchmarks: the embedded server (pgserver) in a directory of one's
choosing, one-off queries, and the statements PostgreSQL executes during a block, read back from
its statement log, so that tests and the benchmark's SQL check count statements through the
server itself rather than by patching a driver.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bookstore.testing.servers import Server, ServerError

__all__ = ["PostgresServer", "StatementLog", "fetch_rows", "statement_log"]

_LOG_WAIT_SECONDS = 10.0


def fetch_rows(database_url: str, sql: str, *args: object) -> list[Any]:
    """The rows of one statement, run on a connection of its own."""

    async def fetch() -> list[Any]:
        connection = await asyncpg.connect(database_url)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    # In a thread of its own, so that it also works where an event loop already runs (async tests).
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, fetch()).result()


class PostgresServer(Server):
    """A private PostgreSQL with its data in ``directory / "postgres"`` (where ``bookstore serve``
    keeps it under ``BOOKSTORE_DATA_DIR``), listening on a Unix socket only; its connection URL is
    ``url`` once started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = ""
        self._stack = ExitStack()

    @property
    def data_dir(self) -> Path:
        return self.directory.resolve() / "postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid (the root of the server's processes), None when it is not running."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        """Start the server, creating its data on first use."""
        # Imported where it is needed: it pulls in Piccolo, which the other tools do without.
        from bookstore.core.database import embedded_postgres

        # pgserver narrates every start and stop at INFO level, and warns (harmlessly) when
        # XDG_RUNTIME_DIR is not set, as in root shells.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            self.url = self._stack.enter_context(embedded_postgres(self.directory))

    def stop(self) -> None:
        self._stack.close()


class StatementLog:
    """PostgreSQL's statement log, read back one block at a time; see :func:`statement_log`."""

    # "LOG:  statement: <sql>" (simple protocol) or "LOG:  execute <name>: <sql>" (prepared).
    _STATEMENT = re.compile(r"LOG:\s+(?:statement|execute [^:]*): (.*)$")

    def __init__(self, database_url: str, log: Path) -> None:
        self.database_url = database_url
        self.log = log

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        """The statements any session executes during the block, in the order PostgreSQL logged
        them (first lines only); the list is filled when the block exits."""
        statements: list[str] = []
        offset = self.log.stat().st_size
        begin = self._mark()
        yield statements
        end = self._mark()
        lines = self._lines_until(offset, end)
        first = next(index for index, line in enumerate(lines) if begin in line) + 1
        for line in lines[first:]:
            if end in line:
                break
            if match := self._STATEMENT.search(line):
                statements.append(match.group(1).strip())

    def _mark(self) -> str:
        """Have PostgreSQL log a statement that is unique to this call; its text."""
        marker = f"statement-log-mark-{secrets.token_hex(8)}"
        fetch_rows(self.database_url, f"SELECT '{marker}'")
        return marker

    def _lines_until(self, offset: int, marker: str) -> list[str]:
        """The log's lines from ``offset`` up to the one with ``marker``, once that one is written."""
        # A backend logs a statement before running it, so the marker is normally there at once;
        # a server with a logging collector writes it a moment later.
        deadline = time.monotonic() + _LOG_WAIT_SECONDS
        while True:
            with self.log.open("rb") as file:
                file.seek(offset)
                text = file.read().decode(errors="replace")
            if marker in text:
                return text.splitlines()
            if time.monotonic() > deadline:
                raise ServerError(f"PostgreSQL did not log {marker!r} in {self.log} within {_LOG_WAIT_SECONDS:.0f} s")
            time.sleep(0.01)


@contextmanager
def statement_log(database_url: str) -> Iterator[StatementLog]:
    """Have PostgreSQL log every statement (``log_statement = 'all'``) for the duration of the block.

    Needs a superuser on a server whose log file this process can read: the embedded one (its
    ``pg_ctl -l`` file), or any local server with a logging collector. The setting is changed with
    ``ALTER SYSTEM`` and reset at the end of the block.
    """
    data_directory, collector_file = fetch_rows(
        database_url, "SELECT current_setting('data_directory'), pg_current_logfile('stderr')"
    )[0]
    log = Path(data_directory) / (collector_file or "log")
    if not log.is_file():
        raise ServerError(f"cannot read PostgreSQL's log at {log}: the statement log needs a server on this machine")
    fetch_rows(database_url, "ALTER SYSTEM SET log_statement = 'all'")
    try:
        fetch_rows(database_url, "SELECT pg_reload_conf()")
        _wait_for_all_sessions_to_log(database_url)
        yield StatementLog(database_url, log)
    finally:
        fetch_rows(database_url, "ALTER SYSTEM RESET log_statement")
        fetch_rows(database_url, "SELECT pg_reload_conf()")


def _wait_for_all_sessions_to_log(database_url: str) -> None:
    # The postmaster signals the running sessions before it starts new ones with the new setting,
    # and a signalled session re-reads its configuration before its next statement.
    deadline = time.monotonic() + _LOG_WAIT_SECONDS
    while fetch_rows(database_url, "SELECT current_setting('log_statement')")[0][0] != "all":
        if time.monotonic() > deadline:
            raise ServerError(f"PostgreSQL did not switch log_statement on within {_LOG_WAIT_SECONDS:.0f} s")
        time.sleep(0.01)
