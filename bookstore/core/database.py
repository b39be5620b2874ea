"""PostgreSQL: the embedded server for development, migrations, and the pool with its bounds.

Every wait on the database is bounded by a setting: opening a connection (connect timeout),
waiting for a pooled one (acquire timeout), one statement as the client waits for it (command
timeout) and as the server runs it (``statement_timeout``). The errors that mean "PostgreSQL is
unavailable" are recognised by :func:`outage_cause`; ``core.errors`` answers them with 503 and
one log line.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

from bookstore.settings import Settings

__all__ = [
    "DATABASE_UNAVAILABLE_ERRORS",
    "DatabasePool",
    "DatabaseUnreachableError",
    "apply_migrations",
    "close_pool",
    "describe_error",
    "embedded_postgres",
    "fetch_all",
    "fetch_one",
    "get_engine",
    "is_unique_violation",
    "open_pool",
    "outage_cause",
    "ping_database",
    "pool_usage",
    "transaction",
]

_logger = logging.getLogger("bookstore.database")


class DatabaseUnreachableError(Exception):
    """No connection to PostgreSQL could be opened: refused, no socket, timed out, unknown host."""


# What a request meets while PostgreSQL is down, restarting, frozen, overloaded or killing sessions.
DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    DatabaseUnreachableError,
    # A connection not acquired, or a statement not answered, within its timeout.
    TimeoutError,
    # Class 08, and a connection that died under a statement (ConnectionDoesNotExistError).
    asyncpg.PostgresConnectionError,
    # Class 57: shutting down, starting up, session terminated, statement_timeout (57014).
    asyncpg.exceptions.OperatorInterventionError,
    # Class 53: too many connections, out of memory, disk full.
    asyncpg.exceptions.InsufficientResourcesError,
    # asyncpg met a message it did not expect on an idle connection: in practice the FATAL a
    # server sends as it ends the session, read just before the connection closes, which leaves
    # the connection unusable until then (seen when PostgreSQL is killed).
    asyncpg.exceptions.InternalClientError,
)
# The connection died under a statement (pg_terminate_backend, a server restart): the statement
# may or may not have run, so only a read is safe to run again.
_CONNECTION_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


def outage_cause(error: BaseException) -> BaseException | None:
    """The error behind ``error`` that means PostgreSQL is unavailable, or None when ``error`` is
    a fault of the request or the code. An ``InterfaceError`` raised while cleaning up after an
    outage (a rollback on the dead connection) stands for the error it was handling."""
    current: BaseException | None = error
    while isinstance(current, asyncpg.InterfaceError):
        current = current.__context__
    return current if isinstance(current, DATABASE_UNAVAILABLE_ERRORS) else None


def describe_error(error: BaseException) -> str:
    """``Type: message`` on one line (some errors, e.g. TimeoutError, have no message)."""
    message = str(error).strip().replace("\n", " ")
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Run a private PostgreSQL server (from the ``pgserver`` wheel) under ``data_dir``.

    Yields its connection URL; the server is stopped when the block exits. The data survives
    restarts. The server listens on a Unix socket only, never on a network port.
    """
    from pgserver.postgres_server import get_server  # imported lazily: only development uses it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


# Where Piccolo looks for its configuration module (piccolo.conf.apps.ENVIRONMENT_VARIABLE and
# DEFAULT_MODULE_NAME, which cannot be imported from there without importing black).
_PICCOLO_CONF_VARIABLE = "PICCOLO_CONF"
_PICCOLO_CONF_MODULE = "piccolo_conf"


@cache
def get_engine() -> PostgresEngine:
    """``piccolo_conf.DB``, bound to every table class defined so far.

    Read from the module itself rather than through Piccolo's ``engine_finder``, and bound to the
    tables here so that their first query does not call it either: ``engine_finder`` imports
    ``piccolo.conf.apps``, which imports black (7.5 MiB in every API worker) to write migration
    files, something only ``piccolo migrations new`` does. Cached: resolving the module again on
    every call cost ~6 % of a read's CPU. A table defined later finds the same engine through
    ``engine_finder``.
    """
    module = importlib.import_module(os.environ.get(_PICCOLO_CONF_VARIABLE, _PICCOLO_CONF_MODULE))
    engine = getattr(module, "DB", None)
    if not isinstance(engine, PostgresEngine):
        raise RuntimeError(f"{module.__name__}.DB must be a PostgresEngine")
    pending = list(Table.__subclasses__())
    while pending:
        table = pending.pop()
        pending.extend(table.__subclasses__())
        if table._meta._db is None:
            table._meta.db = engine
    return engine


# Held while migrations run: any 64-bit number no other code of this database uses.
_MIGRATION_LOCK_KEY = 0x626F6F6B73746F72  # "bookstor"


async def apply_migrations() -> None:
    """Apply every pending Piccolo migration; raise if one fails.

    Under a PostgreSQL advisory lock: Piccolo takes none, so two processes starting at once (two
    replicas, or a replica and the migrate job) both applied the same migration and one failed
    with DuplicateObjectError. The second now waits and then finds nothing pending.
    """
    # Imported here: the migration machinery pulls in black and ~20 MiB that servers never use.
    from piccolo.apps.migrations.commands.forwards import run_forwards

    lock_holder = await asyncpg.connect(**get_engine().config)
    try:
        # A transaction-level lock held by an open transaction, not a session-level one: behind
        # PgBouncer in transaction mode a session lock stays with the server connection after this
        # client leaves, and the next process to migrate waited for it forever.
        async with lock_holder.transaction():
            await lock_holder.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
            result = await run_forwards(app_name="all")
    finally:
        await lock_holder.close()
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")


async def _keep_session_state(connection: asyncpg.Connection) -> None:
    """Pool ``reset`` hook that skips asyncpg's reset query.

    By default every release of a connection costs a round trip (``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``), measured at ~130 us of a
    ~280 us read. The service never changes session state (no SET, LISTEN, advisory locks or
    cursors), and asyncpg still rolls back any open transaction before calling this hook.
    """


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """``asyncpg.connect``, for the pool, with a failure to connect made recognisable.

    A refused connection or a missing Unix socket surfaces as a bare ``OSError``; wrapped, it
    can be answered with 503 without treating every ``OSError`` in the service as an outage.
    """
    try:
        return await asyncpg.connect(*args, **kwargs)
    except OSError as error:
        raise DatabaseUnreachableError(f"cannot connect to PostgreSQL: {describe_error(error)}") from error


class _OneLineOutageWarnings(logging.Filter):
    """Shortens asyncpg's pool warnings about an unavailable server to one line, no traceback.

    While PostgreSQL is down the pool keeps reopening its minimum of connections in the
    background and logs each failed attempt with a full traceback; the outage itself is news,
    its stack is not.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        cause = outage_cause(record.exc_info[1]) if record.exc_info and record.exc_info[1] else None
        if cause is not None:
            record.msg, record.args = f"{record.getMessage()}: {describe_error(cause)}", None
            record.exc_info, record.exc_text = None, None
        return True


_ONE_LINE_OUTAGE_WARNINGS = _OneLineOutageWarnings()


class DatabasePool:
    """The engine's connection pool: asyncpg's, with every wait for a connection bounded.

    ``asyncpg.Pool.acquire`` waits for as long as it takes unless it is given a timeout, has no
    pool-wide default, and Piccolo calls it without one. Piccolo uses ``engine.pool`` only
    through ``acquire``, ``release`` and ``close``, so this stands in for it there and supplies
    the default. (A wrapper, not a subclass: asyncpg builds its pools in ``create_pool``.)
    The timeout a connection was acquired with also bounds its release: after a cancelled
    statement asyncpg waits that long for PostgreSQL to acknowledge the cancel, then closes it.
    """

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float, readiness_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout
        self.readiness_timeout = readiness_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        """asyncpg's acquire context (``async with`` or ``await``), bounded by the acquire timeout."""
        return self.pool.acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def release(self, connection: asyncpg.Connection) -> None:
        await self.pool.release(connection)

    async def close(self) -> None:
        await self.pool.close()

    async def take(self) -> asyncpg.Connection:
        """A connection of the pool, waiting for one at most the acquire timeout; give it back
        with :meth:`release`."""
        # An idle connection is taken without a timeout: acquire() then returns without waiting,
        # and a timeout would cost an asyncio.timeout and a timer on each acquire and release
        # (~10 us of a ~280 us read). get_idle_size() is public; it walks the pool's holders.
        if self.pool.get_idle_size():
            connection: asyncpg.Connection = await self.pool.acquire()
            return connection
        try:
            connection = await self.pool.acquire(timeout=self.acquire_timeout)
        except TimeoutError:
            raise TimeoutError("no pooled connection came free within the acquire timeout") from None
        return connection

    async def run(self, sql: str, args: tuple[object, ...], *, one_row: bool) -> Any:
        """The row (``one_row``) or rows of a statement, on a connection of the pool."""
        connection = await self.take()
        try:
            if one_row:
                return await connection.fetchrow(sql, *args)
            return await connection.fetch(sql, *args)
        except (TimeoutError, asyncpg.exceptions.InternalClientError) as error:
            raise _closed_after(connection, error) from None
        finally:
            await self.pool.release(connection)


def _closed_after(connection: asyncpg.Connection, error: TimeoutError | asyncpg.InternalClientError) -> Exception:
    """Close a connection that is stuck or ending, and say what to raise instead of ``error``.

    A timeout means PostgreSQL did not answer within the command timeout, although
    statement_timeout (shorter) should have stopped the statement: the server is stuck, so the
    connection is closed rather than left waiting for a cancel to be acknowledged. An internal
    client error means the connection was ending (see DATABASE_UNAVAILABLE_ERRORS): it is reported
    lost, so that a read runs again on another one and a write gets 503. Closing the connection
    also ends any transaction it had open on the server.
    """
    connection.terminate()
    if isinstance(error, TimeoutError):
        return TimeoutError("PostgreSQL did not answer within the command timeout")
    lost: Exception = asyncpg.ConnectionDoesNotExistError(f"connection was ending: {error}")
    return lost


async def open_pool(settings: Settings) -> None:
    engine = get_engine()
    logging.getLogger("asyncpg.pool").addFilter(_ONE_LINE_OUTAGE_WARNINGS)
    await engine.start_connection_pool(
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        command_timeout=settings.db_command_timeout_seconds,
        reset=_keep_session_state,
        connect=_connect,
        timeout=settings.db_connect_timeout_seconds,
        statement_cache_size=settings.db_statement_cache_size,
        # Set once per connection, when it opens: free per statement.
        server_settings={"statement_timeout": str(max(1, round(settings.db_statement_timeout_seconds * 1000)))},
    )
    engine.pool = DatabasePool(
        engine.pool,
        acquire_timeout=settings.db_acquire_timeout_seconds,
        readiness_timeout=settings.readiness_timeout_seconds,
    )


def _pool() -> DatabasePool:
    pool = get_engine().pool
    if not isinstance(pool, DatabasePool):
        raise RuntimeError("the connection pool is not open (it opens with the app's lifespan)")
    return pool


def pool_usage() -> tuple[int, int] | None:
    """This process's pool as (connections open, connections checked out); None while it is closed."""
    pool = get_engine().pool
    if not isinstance(pool, DatabasePool):
        return None
    size = pool.pool.get_size()
    return size, size - pool.pool.get_idle_size()


async def fetch_one(sql: str, *args: object, read_only: bool = False) -> asyncpg.Record | None:
    """One row of a parameterised statement, straight from the pool (a prepared statement).

    For hot paths only: Piccolo's query building costs ~150 us of CPU per query, more than the
    query itself. Statements run outside any Piccolo transaction. ``read_only`` says the
    statement changes nothing, so it is run once more if its connection dies under it (a write
    is never repeated: it may have been committed).
    """
    row: asyncpg.Record | None = await _run(sql, args, one_row=True, read_only=read_only)
    return row


async def fetch_all(sql: str, *args: object, read_only: bool = False) -> list[asyncpg.Record]:
    """All rows of a parameterised statement, like :func:`fetch_one`."""
    rows: list[asyncpg.Record] = await _run(sql, args, one_row=False, read_only=read_only)
    return rows


async def _run(sql: str, args: tuple[object, ...], *, one_row: bool, read_only: bool) -> Any:
    database = _pool()
    # When PostgreSQL ends every session at once, the next idle connections taken may be dead too
    # (asyncpg learns of each only when it uses it, then replaces it): a read is run again on up
    # to every connection of the pool, one more than a single retry would allow. Each dead
    # connection fails at once, so this adds no waiting; a database that is down fails to connect,
    # which is not a lost connection and ends the retries.
    retries_left = database.pool.get_max_size() if read_only else 0
    while True:
        try:
            return await database.run(sql, args, one_row=one_row)
        except _CONNECTION_LOST as error:
            if retries_left == 0:
                raise
            retries_left -= 1
            _logger.warning("connection lost under a read, running it again: %s", describe_error(error))


@asynccontextmanager
async def transaction() -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection in a transaction (READ COMMITTED), committed when the block ends and
    rolled back when it raises.

    For the write paths that need several statements to succeed or fail together; run them with
    the connection's ``fetch``/``fetchrow``/``execute`` (prepared statements, as :func:`fetch_one`).
    The waits are bounded as in :meth:`DatabasePool.run`, and a connection lost or stuck on the way
    (commit included) surfaces as one of :data:`DATABASE_UNAVAILABLE_ERRORS`, answered with 503.
    Nothing is ever run again: after a lost connection the transaction may have been committed.
    """
    database = _pool()
    connection = await database.take()
    try:
        # Not `async with connection.transaction()`: that would roll back on a stuck server too,
        # waiting a second command timeout before the connection could be closed.
        transaction = connection.transaction()
        await transaction.start()
        try:
            yield connection
        except BaseException as error:
            # A closed connection has no transaction left to roll back; a stuck one is closed below.
            stuck = isinstance(error, TimeoutError | asyncpg.exceptions.InternalClientError)
            if not stuck and not connection.is_closed():
                await transaction.rollback()
            raise
        await transaction.commit()
    except (TimeoutError, asyncpg.exceptions.InternalClientError) as error:
        raise _closed_after(connection, error) from None
    finally:
        await database.pool.release(connection)


async def close_pool() -> None:
    await get_engine().close_connection_pool()


async def ping_database() -> bool:
    """True when PostgreSQL answers a trivial query within the readiness timeout.

    It never waits longer: asyncpg would wait for the server to acknowledge the cancel of a
    statement cut short (a frozen server never does), so that connection is closed instead.
    """
    database = _pool()
    connection = None
    try:
        async with asyncio.timeout(database.readiness_timeout):
            connection = await database.pool.acquire()
            await connection.fetchval("SELECT 1")
    except Exception as error:
        if outage_cause(error) is None:
            raise
        if connection is not None and isinstance(error, TimeoutError):
            connection.terminate()
        _logger.warning("database readiness check failed: %s", describe_error(error))
        return False
    finally:
        if connection is not None:
            await database.pool.release(connection)
    return True


def is_unique_violation(error: BaseException, constraint: str | None = None) -> bool:
    """True when ``error`` is PostgreSQL's unique violation (on ``constraint``, if given)."""
    if not isinstance(error, asyncpg.UniqueViolationError):
        return False
    return constraint is None or error.constraint_name == constraint
