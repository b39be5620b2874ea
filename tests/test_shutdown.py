"""Graceful shutdown of ``bookstore serve``: SIGTERM refuses new connections at once, lets the
requests in flight finish, closes each worker's pool and Redis client and exits 0; a request still
running after ``BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS`` is cut off, and the server exits all the same.

The slow request needs no hook in the service: the test holds a book's row lock from a connection
of its own, so the service's ``PATCH`` of that book waits in PostgreSQL until the test lets go.
The signal goes to the ``bookstore serve`` process only, as an orchestrator sends it: its process
group may hold the embedded PostgreSQL too.

Whether the pool was closed, rather than dropped with the process, PostgreSQL tells: a session
whose client goes away without saying goodbye counts in ``pg_stat_database.sessions_abandoned``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx
import msgspec
import pytest
import yaml
from litestar import Litestar
from litestar_granian.supervisor import _KILL_GRACE_PERIOD

from bookstore.core.ratelimit import RateLimiter, RateLimitPlugin
from bookstore.settings import Settings
from bookstore.testing import LOOPBACK
from tests.conftest import make_settings
from tests.helpers import ApiClient
from tests.servers import BookstoreProcess, RedisProcess

ROOT = Path(__file__).resolve().parents[1]
BOOKS = "/api/v1/books"
# Long enough for a loaded machine: the drained request must finish, never be killed.
DRAIN_TIMEOUT_SECONDS = 30
# Short: the request held up by the lock outlives it.
CUT_OFF_TIMEOUT_SECONDS = 2
# What happens at once on an idle machine may take this long on a busy, shared one.
MARGIN_SECONDS = 10.0
SERVER_SETTINGS = {
    # Two connections per pool: a worker has an idle one besides the PATCH's.
    "BOOKSTORE_DB_POOL_MIN_SIZE": "2",
    # statement_timeout counts lock waits: the PATCH must wait for the test, not time out.
    "BOOKSTORE_DB_STATEMENT_TIMEOUT_SECONDS": "120",
    "BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS": "130",
}
SETTING_DEFAULTS = {field.name: field.default for field in msgspec.structs.fields(Settings)}


@dataclass
class LiveServer:
    process: BookstoreProcess
    # The application_name of its PostgreSQL sessions, to tell them from the test's own.
    session_name: str

    def send_sigterm(self) -> float:
        """SIGTERM to the ``bookstore serve`` process (not its group); when it was sent."""
        os.kill(self.process.pid, signal.SIGTERM)
        return time.monotonic()

    async def wait_for_exit(self, within: float) -> int:
        popen = self.process.process
        assert popen is not None
        return await asyncio.to_thread(popen.wait, within)


def with_application_name(database_url: str, name: str) -> str:
    """``database_url`` with sessions named ``name`` (asyncpg passes URL parameters it does not
    know to PostgreSQL as settings)."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(query=urlencode([*parse_qsl(parts.query), ("application_name", name)])))


@pytest.fixture
def start_server(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Callable[[int], LiveServer]]:
    """Start ``bookstore serve`` (one worker; Redis for its rate limits) with a shutdown timeout."""
    servers: list[LiveServer] = []

    def start(shutdown_timeout: int) -> LiveServer:
        session_name = f"shutdown-test-{secrets.token_hex(4)}"
        env = {
            **SERVER_SETTINGS,
            "DATABASE_URL": with_application_name(database_url, session_name),
            "REDIS_URL": redis_url,
            "BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS": str(shutdown_timeout),
        }
        server = LiveServer(BookstoreProcess(tmp_path / session_name, env=env), session_name)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.process.stop()


@contextlib.asynccontextmanager
async def connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    opened = await asyncpg.connect(database_url)
    try:
        yield opened
    finally:
        await opened.close()


@contextlib.asynccontextmanager
async def book_locked(database_url: str, book_id: int) -> AsyncIterator[None]:
    """Hold the book's row lock for the block, as a slow writer would; every update of it waits."""
    async with connection(database_url) as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM book WHERE id = $1 FOR UPDATE", book_id)
        yield


async def poll(condition: Callable[[], Awaitable[bool]], failure: str) -> None:
    """Return once ``await condition()`` is true; fail after ``MARGIN_SECONDS``."""
    deadline = time.monotonic() + MARGIN_SECONDS
    while not await condition():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.02)  # polling, bounded by the deadline


async def wait_for_the_update_to_wait_for_the_lock(observer: asyncpg.Connection, server: LiveServer) -> None:
    async def waiting() -> bool:
        # Each statement of the autocommit observer sees the current activity.
        count = await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
            "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE book %'",
            server.session_name,
        )
        return bool(count)

    await poll(waiting, "the server's UPDATE never waited for the book's lock")


async def wait_until_refused(port: int) -> None:
    """Return once a new connection to ``port`` is refused."""

    async def refused() -> bool:
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, port)
        except ConnectionRefusedError:
            return True
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        return False

    await poll(refused, f"new connections were still accepted {MARGIN_SECONDS:.0f} s after SIGTERM")


async def wait_until_its_sessions_end(observer: asyncpg.Connection, server: LiveServer) -> None:
    async def ended() -> bool:
        count: int = await observer.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", server.session_name
        )
        return count == 0

    await poll(ended, "the server's PostgreSQL sessions outlived it")


async def abandoned_sessions(observer: asyncpg.Connection) -> int:
    """Sessions of this database ended so far because their client went away without a goodbye."""
    count: int = await observer.fetchval(
        "SELECT sessions_abandoned FROM pg_stat_database WHERE datname = current_database()"
    )
    return count


async def book_to_update(http: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    """A new book and the headers of its owner."""
    client = ApiClient(http)
    account = await client.account()
    book = await client.create_book(account)
    return book["id"], account.headers


@pytest.mark.slow
async def test_sigterm_refuses_new_connections_lets_the_request_in_flight_finish_and_exits_0(
    start_server: Callable[[int], LiveServer], database_url: str
) -> None:
    server = start_server(DRAIN_TIMEOUT_SECONDS)
    async with httpx.AsyncClient(base_url=server.process.base_url, timeout=60) as http:
        book_id, owner = await book_to_update(http)
        async with connection(database_url) as observer:
            abandoned_before = await abandoned_sessions(observer)
            async with book_locked(database_url, book_id):
                update = asyncio.create_task(http.patch(f"{BOOKS}/{book_id}", json={"title": "Drained"}, headers=owner))
                await wait_for_the_update_to_wait_for_the_lock(observer, server)
                signalled_at = server.send_sigterm()
                await wait_until_refused(server.process.port)
                # Refused while the request is still in flight, not because the server is gone.
                assert not update.done()
                assert server.process.alive()
            response = await update
            returncode = await server.wait_for_exit(DRAIN_TIMEOUT_SECONDS)
            exited_after = time.monotonic() - signalled_at
            await wait_until_its_sessions_end(observer, server)
            abandoned_after = await abandoned_sessions(observer)

    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Drained"
    assert returncode == 0, server.process.log_tail()
    assert exited_after < DRAIN_TIMEOUT_SECONDS
    # Every connection of the pool was closed with a goodbye: the worker closed its pool.
    assert abandoned_after == abandoned_before
    assert "Traceback" not in server.process.output()


@pytest.mark.slow
async def test_a_request_still_running_at_the_shutdown_timeout_is_cut_off_and_the_server_exits_0(
    start_server: Callable[[int], LiveServer], database_url: str
) -> None:
    server = start_server(CUT_OFF_TIMEOUT_SECONDS)
    async with httpx.AsyncClient(base_url=server.process.base_url, timeout=60) as http:
        book_id, owner = await book_to_update(http)
        async with connection(database_url) as observer:
            abandoned_before = await abandoned_sessions(observer)
            async with book_locked(database_url, book_id):
                update = asyncio.create_task(http.patch(f"{BOOKS}/{book_id}", json={"title": "Cut"}, headers=owner))
                await wait_for_the_update_to_wait_for_the_lock(observer, server)
                signalled_at = server.send_sigterm()
                await wait_until_refused(server.process.port)
                # The lock is held all along: the worker is still busy when its time is up.
                returncode = await server.wait_for_exit(CUT_OFF_TIMEOUT_SECONDS + _KILL_GRACE_PERIOD + MARGIN_SECONDS)
                exited_after = time.monotonic() - signalled_at
                with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                    await update
            # Released, the UPDATE of the killed worker's session runs and finds its client gone.
            await wait_until_its_sessions_end(observer, server)
            abandoned_after = await abandoned_sessions(observer)

    # Granian killed the worker and exited by itself: had litestar-granian's supervisor had to kill
    # Granian (5 s later), the exit code would be 137.
    assert returncode == 0, server.process.log_tail()
    # The worker had its whole shutdown timeout.
    assert exited_after >= CUT_OFF_TIMEOUT_SECONDS
    # The killed worker's connections were dropped, not closed: what the drain test rules out.
    assert abandoned_after > abandoned_before


async def test_the_apps_lifespan_closes_the_rate_limiters_redis_client(disposable_redis: RedisProcess) -> None:
    limiter = RateLimiter.from_settings(make_settings(redis_url=disposable_redis.url), lambda _token: None)
    app = Litestar(plugins=[RateLimitPlugin(limiter, exclude=[])])
    with contextlib.closing(disposable_redis.client()) as observer:
        own_id = observer.client_id()

        async def others() -> int:
            return sum(1 for client in observer.client_list() if int(client["id"]) != own_id)

        async def none_left() -> bool:
            return await others() == 0

        async with app.lifespan():
            # The start-up report's PING opened the limiter's connection.
            assert await others() == 1
        await poll(none_left, "the rate limiter's Redis connection outlived the app")


def test_kubernetes_grace_period_outlasts_the_prestop_sleep_and_the_shutdown_timeout() -> None:
    """Kubernetes sends SIGKILL after the grace period, which starts with the preStop sleep;
    ``bookstore serve`` exits by the shutdown timeout after SIGTERM, at the latest when
    litestar-granian's supervisor kills Granian a few seconds later."""
    kubernetes = ROOT / "deploy" / "kubernetes"
    pod = yaml.safe_load((kubernetes / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    config = yaml.safe_load((kubernetes / "configmap.yaml").read_text())["data"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown_timeout = int(
        config.get("BOOKSTORE_SHUTDOWN_TIMEOUT_SECONDS", SETTING_DEFAULTS["shutdown_timeout_seconds"])
    )
    assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown_timeout + _KILL_GRACE_PERIOD
