"""Tools for tests and benchmarks, shipped with the package (as ``litestar.testing`` is): real
PostgreSQL, Redis and ``bookstore serve`` processes on loopback, and the statements PostgreSQL
executes during a block. Nothing here imports pytest; a missing program raises
:class:`ToolMissingError`, which a test suite may turn into a skip.
"""

from bookstore.testing.postgres import PostgresServer, StatementLog, fetch_rows, statement_log
from bookstore.testing.servers import (
    LOOPBACK,
    AdminServer,
    BookstoreServer,
    HttpServer,
    RedisServer,
    Server,
    ServerError,
    ServerProcess,
    ToolMissingError,
    clean_environment,
    free_port,
    redis_server_binary,
)

__all__ = [
    "LOOPBACK",
    "AdminServer",
    "BookstoreServer",
    "HttpServer",
    "PostgresServer",
    "RedisServer",
    "Server",
    "ServerError",
    "ServerProcess",
    "StatementLog",
    "ToolMissingError",
    "clean_environment",
    "fetch_rows",
    "free_port",
    "redis_server_binary",
    "statement_log",
]
