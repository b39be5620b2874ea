"""Database outages against a live ``bookstore serve``: PostgreSQL stopped, frozen, killed or
terminating the app's sessions, the pool run dry, a statement past ``statement_timeout``, and
crashes of PostgreSQL and of the API, after which every acknowledged write must still be there.

The API runs on a PostgreSQL of this module's own, so the session database is never disturbed,
with timeouts short enough to watch them work. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pgserver._commands import pg_ctl
from pgserver.postgres_server import get_server
from pgserver.utils import PostmasterInfo

from bookstore.testing import PostgresServer, fetch_rows
from bookstore.testing.processes import process_tree, stat_fields
from tests.helpers import PASSWORD, Account, ApiClient, assert_problem, book_payload
from tests.servers import BookstoreProcess

pytestmark = pytest.mark.slow
_logger = logging.getLogger(__name__)

BOOKS = "/api/v1/books"
# Short bounds, so that an outage shows within a test. A request that needs the database answers
# within ACQUIRE + COMMAND seconds at worst (a pooled connection, then one statement).
ACQUIRE = 1.0
COMMAND = 1.5
STATEMENT = 1.0
READINESS = 0.5
REQUEST_BOUND = ACQUIRE + COMMAND
MARGIN = 1.0
DATABASE_SETTINGS = {
    "BOOKSTORE_DB_CONNECT_TIMEOUT_SECONDS": str(ACQUIRE),
    "BOOKSTORE_DB_ACQUIRE_TIMEOUT_SECONDS": str(ACQUIRE),
    "BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS": str(COMMAND),
    "BOOKSTORE_DB_STATEMENT_TIMEOUT_SECONDS": str(STATEMENT),
    "BOOKSTORE_READINESS_TIMEOUT_SECONDS": str(READINESS),
}
POOL_SIZE = 4  # BookstoreProcess's BOOKSTORE_DB_POOL_MAX_SIZE
SMALL_POOL_ACQUIRE = 0.5
# Consecutive successes that count as recovered.
RECOVERED = 30


# --- PostgreSQL under the test's control -------------------------------------------------------


def _pgserver(database: PostgresServer) -> Any:
    # The handle PostgresServer.start() opened: pgserver keeps one per data directory.
    return get_server(database.data_dir)


def stop_postgres(database: PostgresServer) -> None:
    """``pg_ctl stop -m fast``: sessions are terminated, the server shuts down cleanly."""
    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=database.data_dir, user=_pgserver(database).system_user)


def start_postgres(database: PostgresServer) -> None:
    """Start the server again on the same data directory and socket (pgserver's own start)."""
    _pgserver(database).ensure_postgres_running()


def _postgres_processes(database: PostgresServer) -> list[int]:
    postmaster = database.pid
    if postmaster is None:
        raise AssertionError("PostgreSQL is not running")
    return process_tree(postmaster)


def _signal_all(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def crash_postgres(database: PostgresServer) -> None:
    """SIGKILL the postmaster and every process it started, as a crash of the server would."""
    postmaster = database.pid
    assert postmaster is not None, "PostgreSQL is not running"
    socket_dir = PostmasterInfo.read_from_pgdata(database.data_dir).socket_dir
    os.kill(postmaster, signal.SIGSTOP)  # so that it starts no backend between the list and the kill
    processes = process_tree(postmaster)
    _signal_all(processes, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any((fields := stat_fields(pid)) is not None and fields[0] != "Z" for pid in processes):
        assert time.monotonic() < deadline, "PostgreSQL's processes outlived SIGKILL"
        time.sleep(0.01)
    # Where PID 1 does not reap orphans (this sandbox) the dead postmaster stays a zombie, which
    # PostgreSQL takes for a live one when it reads its lock files; they are stale either way.
    (database.data_dir / "postmaster.pid").unlink(missing_ok=True)
    for lock in socket_dir.glob(".s.PGSQL.*.lock"):
        lock.unlink()


@contextlib.contextmanager
def frozen(database: PostgresServer) -> Iterator[None]:
    """SIGSTOP the postmaster and all its processes for the block: connections stay open, nothing answers."""
    processes = _postgres_processes(database)
    _signal_all(processes, signal.SIGSTOP)
    try:
        yield
    finally:
        _signal_all(processes, signal.SIGCONT)


def _accepts_connections(database: PostgresServer) -> bool:
    try:
        fetch_rows(database.url, "SELECT 1")
    except (OSError, asyncpg.PostgresError):
        return False
    return True


@pytest.fixture(scope="module")
def module_postgres() -> Iterator[PostgresServer]:
    # Not under pytest's tmp_path: PostgreSQL runs as another user when the tests run as root,
    # and every pytest session that starts makes /tmp/pytest-of-root private again (0700), which
    # would lock a server out of its own directory on its next start.
    directory = Path(tempfile.mkdtemp(prefix="bookstore-outages-"))
    server = PostgresServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def database(module_postgres: PostgresServer) -> Iterator[PostgresServer]:
    """This module's PostgreSQL, running again after the test whatever the test did to it."""
    yield module_postgres
    if module_postgres.pid is not None:
        _signal_all(process_tree(module_postgres.pid), signal.SIGCONT)
    if not _accepts_connections(module_postgres):
        if module_postgres.pid is not None:
            crash_postgres(module_postgres)
        start_postgres(module_postgres)


@pytest.fixture(scope="module")
def api(module_postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookstoreProcess]:
    """``bookstore serve`` with the short bounds, shared by the tests that leave it running."""
    env = {"DATABASE_URL": module_postgres.url, **DATABASE_SETTINGS}
    server = BookstoreProcess(tmp_path_factory.mktemp("outage-api"), env=env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def small_pool_api(
    module_postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BookstoreProcess]:
    """``bookstore serve`` with two connections and a long statement_timeout, so that statements
    held up by a lock keep both connections for seconds."""
    env = {
        "DATABASE_URL": module_postgres.url,
        **DATABASE_SETTINGS,
        "BOOKSTORE_DB_POOL_MIN_SIZE": "1",
        "BOOKSTORE_DB_POOL_MAX_SIZE": "2",
        "BOOKSTORE_DB_ACQUIRE_TIMEOUT_SECONDS": str(SMALL_POOL_ACQUIRE),
        "BOOKSTORE_DB_STATEMENT_TIMEOUT_SECONDS": "4",
        "BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS": "5",
    }
    server = BookstoreProcess(tmp_path_factory.mktemp("small-pool-api"), env=env)
    yield server
    server.stop()


@pytest.fixture
def start_api(tmp_path: Path, database: PostgresServer) -> Iterator[Callable[..., BookstoreProcess]]:
    """Start a ``bookstore serve`` of the test's own on this module's PostgreSQL, with the short
    bounds unless ``settings`` (environment variables) say otherwise."""
    servers: list[BookstoreProcess] = []

    def start(**settings: str) -> BookstoreProcess:
        env = {"DATABASE_URL": database.url, **DATABASE_SETTINGS, **settings}
        server = BookstoreProcess(tmp_path / f"api-{len(servers)}", env=env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


_STATEMENT_TIMEOUT_LOGGED = "database unavailable: QueryCanceledError: canceling statement due to statement timeout"


def wait_for_output(api: BookstoreProcess, condition: Callable[[str], bool]) -> None:
    """Poll the server's log until ``condition`` holds (its log lines pass through a queue thread)."""
    deadline = time.monotonic() + 5
    while not condition(api.output()):
        assert time.monotonic() < deadline, api.log_tail()
        time.sleep(0.02)


def assert_no_traceback(api: BookstoreProcess, since: int = 0) -> None:
    """No traceback in what the server logged from offset ``since`` on (a shared server's log
    holds the earlier tests' lines too)."""
    output = api.output()[since:]
    assert "Traceback" not in output, output[-8000:]


# --- a client load that records every outcome --------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    operation: str
    started: float
    ended: float
    status: int  # 0: no HTTP response at all (refused or reset)
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: bytes = b""

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


async def account_with_book(http: httpx.AsyncClient) -> tuple[Account, int]:
    """A new account, logged in, and the id of a book it added."""
    api_client = ApiClient(http)
    account = await api_client.account()
    book = await api_client.create_book(account)
    return account, book["id"]


class Load:
    """Clients sending ``operations`` in turn, as fast as answers come, recording each outcome."""

    def __init__(self, http: httpx.AsyncClient, account: Account, book_id: int, operations: tuple[str, ...]) -> None:
        self.http = http
        self.account = account
        self.book_id = book_id
        self.operations = operations
        self.outcomes: list[Outcome] = []

    def _send(self, operation: str) -> Any:
        auth = self.account.headers
        if operation == "get_book":
            return self.http.get(f"{BOOKS}/{self.book_id}")
        if operation == "list_books":
            return self.http.get(BOOKS, params={"limit": 5})
        if operation == "create_book":
            return self.http.post(BOOKS, json=book_payload(), headers=auth)
        if operation == "me":
            return self.http.get("/api/v1/users/me", headers=auth)
        if operation == "login":
            return self.http.post("/api/v1/auth/login", json={"email": self.account.email, "password": PASSWORD})
        raise ValueError(operation)

    async def _client(self, first: int) -> None:
        for index in itertools.count(first):
            operation = self.operations[index % len(self.operations)]
            started = time.monotonic()
            try:
                response = await self._send(operation)
            except httpx.TransportError:
                self.outcomes.append(Outcome(operation, started, time.monotonic(), 0))
                continue
            self.outcomes.append(
                Outcome(operation, started, time.monotonic(), response.status_code, response.headers, response.content)
            )

    @contextlib.asynccontextmanager
    async def running(self, clients: int) -> AsyncIterator[Load]:
        tasks = [asyncio.create_task(self._client(first)) for first in range(clients)]
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def streak(self, since: float) -> int:
        """Successes in a row, counted back from the latest outcome, among those started after ``since``."""
        count = 0
        for outcome in sorted(self.outcomes, key=lambda outcome: outcome.ended, reverse=True):
            if outcome.started < since or not outcome.ok:
                break
            count += 1
        return count

    def failures(self, since: float = 0.0) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.started >= since and not outcome.ok]

    async def wait_until(self, condition: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s: {what}; last outcomes: {self.outcomes[-5:]}")
            await asyncio.sleep(0.02)  # polling a condition, bounded by the deadline


def assert_unavailable(outcome: Outcome) -> None:
    """A 503 problem+json asking the client to come back."""
    response = httpx.Response(outcome.status, headers=outcome.headers, content=outcome.body)
    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1


def report(name: str, value: object) -> None:
    """Log a measured figure (shown with ``--log-cli-level=INFO``)."""
    _logger.info("%s = %s", name, value)


def client(api: BookstoreProcess) -> httpx.AsyncClient:
    # The client's own timeout only keeps a broken test from hanging: far above every bound.
    return httpx.AsyncClient(base_url=api.base_url, timeout=15.0)


# --- the outages -------------------------------------------------------------------------------


async def test_a_postgres_restart_answers_503_then_recovers_without_restarting_the_api(
    api: BookstoreProcess, database: PostgresServer
) -> None:
    log_start = len(api.output())
    api_processes = process_tree(api.pid)
    async with client(api) as http:
        account, book_id = await account_with_book(http)
        operations = ("get_book", "create_book", "list_books", "me", "login")
        load = Load(http, account, book_id, operations)
        async with load.running(clients=4):
            await load.wait_until(lambda: load.streak(0) >= RECOVERED, 10, "a warm start")
            await asyncio.to_thread(stop_postgres, database)
            down = time.monotonic()
            # Down for a few seconds, as in a restart.
            await load.wait_until(lambda: time.monotonic() - down >= 3 and len(load.failures(down)) >= 40, 10, "503s")
            liveness, readiness, login = await asyncio.gather(
                http.get("/health"),
                http.get("/health/ready"),
                http.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD}),
            )
            restarting = time.monotonic()
            await asyncio.to_thread(start_postgres, database)
            back = time.monotonic()
            await load.wait_until(lambda: load.streak(back) >= RECOVERED, 10, "recovery")

    assert liveness.status_code == 200
    assert_problem(readiness, 503)
    assert_problem(login, 503)
    assert {outcome.status for outcome in load.outcomes} <= {200, 201, 503}
    for failure in load.failures():
        assert_unavailable(failure)
    outage = [outcome for outcome in load.outcomes if outcome.started >= down and outcome.ended <= restarting]
    assert outage
    assert all(outcome.status == 503 for outcome in outage)
    longest = max(outcome.elapsed for outcome in load.outcomes)
    assert longest <= REQUEST_BOUND + MARGIN
    last_failure = max((failure.started for failure in load.failures()), default=down)
    assert last_failure < back + 5
    assert process_tree(api.pid) == api_processes  # neither the server nor a worker was restarted
    assert_no_traceback(api, log_start)
    report("restart_503s", len(load.failures()))
    report("restart_longest_request_s", round(longest, 3))
    report("restart_outage_s", round(back - down, 3))
    report("restart_last_failure_after_back_s", round(last_failure - back, 3))
    report("restart_postgres_start_s", round(back - restarting, 3))


async def test_terminated_sessions_fail_at_most_their_in_flight_requests(
    api: BookstoreProcess, database: PostgresServer
) -> None:
    log_start = len(api.output())
    async with client(api) as http:
        account, book_id = await account_with_book(http)
        load = Load(http, account, book_id, ("get_book", "create_book", "list_books", "me"))
        async with load.running(clients=4):
            await load.wait_until(lambda: load.streak(0) >= RECOVERED, 10, "a warm start")
            killed_at = time.monotonic()
            terminated = fetch_rows(
                database.url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            await load.wait_until(lambda: load.streak(killed_at) >= 2 * RECOVERED, 10, "recovery")
        reconnected = fetch_rows(
            database.url,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )[0][0]

    assert terminated
    failures = load.failures()
    assert len(failures) <= min(len(terminated), POOL_SIZE)
    for failure in failures:
        assert_unavailable(failure)
        assert failure.operation not in {"get_book", "list_books"}  # reads are run again
    assert reconnected >= 1
    assert_no_traceback(api, log_start)
    report("terminated_sessions", len(terminated))
    report("terminated_failed_requests", len(failures))
    report("terminated_reads_run_again", api.output()[log_start:].count("connection lost under a read"))


@contextlib.asynccontextmanager
async def book_table_locked(database: PostgresServer) -> AsyncIterator[asyncpg.Connection]:
    """Hold an exclusive lock on ``book`` for the block: every statement on it waits."""
    connection = await asyncpg.connect(database.url)
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE book IN ACCESS EXCLUSIVE MODE")
            yield connection
    finally:
        await connection.close()


async def wait_for_lock_waiters(database: PostgresServer, count: int) -> None:
    deadline = time.monotonic() + 10
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    while (await asyncio.to_thread(fetch_rows, database.url, query))[0][0] < count:
        assert time.monotonic() < deadline, f"{count} statements did not start waiting for the lock"
        await asyncio.sleep(0.02)  # polling, bounded by the deadline


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_an_exhausted_pool_answers_503_within_the_acquire_timeout(
    small_pool_api: BookstoreProcess, database: PostgresServer
) -> None:
    api = small_pool_api
    log_start = len(api.output())
    async with client(api) as http:
        account, book_id = await account_with_book(http)
        book = f"{BOOKS}/{book_id}"
        async with book_table_locked(database):
            holders = [asyncio.create_task(http.get(book)) for _ in range(2)]
            await wait_for_lock_waiters(database, 2)
            others = await asyncio.gather(
                timed(http.get(book)),
                timed(http.get("/api/v1/users/me", headers=account.headers)),
                timed(http.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD})),
            )
        held = await asyncio.gather(*holders)
        after = await http.get(book)

    for response, elapsed in others:
        assert_problem(response, 503)
        assert response.headers["retry-after"]
        assert elapsed < SMALL_POOL_ACQUIRE + MARGIN
    assert [response.status_code for response in held] == [200, 200]
    assert after.status_code == 200
    assert_no_traceback(api, log_start)
    report("exhausted_longest_503_s", round(max(elapsed for _, elapsed in others), 3))


async def test_a_read_cut_off_by_a_terminated_session_runs_again_but_a_write_does_not(
    small_pool_api: BookstoreProcess, database: PostgresServer
) -> None:
    api = small_pool_api
    log_start = len(api.output())
    payload = book_payload()
    async with client(api) as http:
        account, book_id = await account_with_book(http)
        book = f"{BOOKS}/{book_id}"
        async with book_table_locked(database):
            read = asyncio.create_task(http.get(book))
            write = asyncio.create_task(http.post(BOOKS, json=payload, headers=account.headers))
            await wait_for_lock_waiters(database, 2)
            terminated = await asyncio.to_thread(
                fetch_rows,
                database.url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            )
            await wait_for_lock_waiters(database, 1)  # the read, run again, waits for the lock anew
        read_response, write_response = await read, await write

    assert len(terminated) == 2
    assert read_response.status_code == 200
    assert_problem(write_response, 503)
    # Not run again: the insert never happened (it might have been committed, for all the app knew).
    assert fetch_rows(database.url, "SELECT id FROM book WHERE isbn = $1", payload["isbn"]) == []
    assert_no_traceback(api, log_start)


async def test_a_statement_past_statement_timeout_answers_503(api: BookstoreProcess, database: PostgresServer) -> None:
    log_start = len(api.output())
    async with client(api) as http:
        account, book_id = await account_with_book(http)
        book = f"{BOOKS}/{book_id}"
        async with book_table_locked(database):
            (read, read_elapsed), (write, write_elapsed) = await asyncio.gather(
                timed(http.get(book)), timed(http.post(BOOKS, json=book_payload(), headers=account.headers))
            )
        after = await http.get(book)

    for response, elapsed in ((read, read_elapsed), (write, write_elapsed)):
        assert_problem(response, 503)
        # Stopped by PostgreSQL's statement_timeout, before the client's command timeout.
        assert STATEMENT * 0.9 <= elapsed < COMMAND
    assert after.status_code == 200  # the connections that ran them are fine
    wait_for_output(api, lambda output: output[log_start:].count(_STATEMENT_TIMEOUT_LOGGED) >= 2)
    assert_no_traceback(api, log_start)


async def test_a_frozen_postgres_gets_503s_within_the_bounds_then_recovers(
    api: BookstoreProcess, database: PostgresServer
) -> None:
    log_start = len(api.output())
    async with client(api) as http:
        account, book_id = await account_with_book(http)
        load = Load(http, account, book_id, ("get_book", "create_book", "me"))
        async with load.running(clients=4):
            await load.wait_until(lambda: load.streak(0) >= RECOVERED, 10, "a warm start")
            with frozen(database):
                frozen_at = time.monotonic()
                readiness, readiness_elapsed = await timed(http.get("/health/ready"))
                await load.wait_until(lambda: len(load.failures(frozen_at)) >= 8, 10, "503s while frozen")
            thawed = time.monotonic()
            await load.wait_until(lambda: load.streak(thawed) >= RECOVERED, 10, "recovery")
        ready_again = await http.get("/health/ready")

    assert_problem(readiness, 503)
    assert readiness_elapsed < READINESS + MARGIN / 2
    assert {outcome.status for outcome in load.outcomes} <= {200, 201, 503}
    for failure in load.failures():
        assert_unavailable(failure)
    longest = max(outcome.elapsed for outcome in load.outcomes)
    assert longest <= REQUEST_BOUND + MARGIN
    assert ready_again.status_code == 200
    assert_no_traceback(api, log_start)
    report("frozen_readiness_s", round(readiness_elapsed, 3))
    report("frozen_503s", len(load.failures()))
    report("frozen_longest_request_s", round(longest, 3))
    report("frozen_s", round(thawed - frozen_at, 3))


def created_ids(load: Load) -> list[int]:
    return [json.loads(outcome.body)["id"] for outcome in load.outcomes if outcome.status == 201]


def stored(database: PostgresServer, ids: list[int]) -> set[int]:
    return {row[0] for row in fetch_rows(database.url, "SELECT id FROM book WHERE id = ANY($1)", ids)}


async def test_every_acknowledged_write_survives_a_postgres_crash(
    api: BookstoreProcess, database: PostgresServer
) -> None:
    log_start = len(api.output())
    # Durability rests on PostgreSQL's defaults: a commit is acknowledged once its WAL is flushed.
    assert fetch_rows(database.url, "SELECT current_setting('synchronous_commit'), current_setting('fsync')")[0] == (
        "on",
        "on",
    )
    async with client(api) as http:
        account, book_id = await account_with_book(http)
        load = Load(http, account, book_id, ("create_book",))
        async with load.running(clients=4):
            await load.wait_until(lambda: load.streak(0) >= RECOVERED, 10, "writes before the crash")
            await asyncio.to_thread(crash_postgres, database)
            crashed = time.monotonic()
            await load.wait_until(lambda: len(load.failures(crashed)) >= 8, 10, "503s after the crash")
            await asyncio.to_thread(start_postgres, database)
            back = time.monotonic()
            await load.wait_until(lambda: load.streak(back) >= 10, 10, "writes after the restart")

    acknowledged = created_ids(load)
    assert set(acknowledged) == stored(database, acknowledged)
    assert {outcome.status for outcome in load.outcomes} <= {201, 503}
    assert_no_traceback(api, log_start)
    report("postgres_crash_acknowledged_writes", len(acknowledged))


async def test_every_acknowledged_write_survives_an_api_crash(
    start_api: Callable[..., BookstoreProcess], api: BookstoreProcess, database: PostgresServer
) -> None:
    doomed = start_api()
    async with client(doomed) as http:
        account, book_id = await account_with_book(http)
        load = Load(http, account, book_id, ("create_book",))
        async with load.running(clients=4):
            await load.wait_until(lambda: load.streak(0) >= RECOVERED, 10, "writes before the crash")
            _signal_all(process_tree(doomed.pid), signal.SIGKILL)
            await load.wait_until(lambda: bool(load.failures()), 10, "the API gone")

    acknowledged = created_ids(load)
    assert set(acknowledged) == stored(database, acknowledged)
    async with client(api) as http:  # another API process on the same database serves them
        for book_id in acknowledged[-5:]:
            assert (await http.get(f"{BOOKS}/{book_id}")).status_code == 200
    assert {outcome.status for outcome in load.outcomes} <= {0, 201}
    assert_no_traceback(doomed)
    report("api_crash_acknowledged_writes", len(acknowledged))
