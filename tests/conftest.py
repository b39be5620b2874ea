"""Test session: a real PostgreSQL (embedded, or TEST_DATABASE_URL), migrated once, emptied after
every test, and the app running its lifespan in the session's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from bookstore.testing import PostgresServer

# The database must exist before anything imports piccolo_conf (its engine reads DATABASE_URL).
_temp_dir = Path(tempfile.mkdtemp(prefix="bookstore-tests-"))
_embedded_server: PostgresServer | None = None
if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
else:
    _embedded_server = PostgresServer(_temp_dir)
    _embedded_server.start()
    os.environ["DATABASE_URL"] = _embedded_server.url

from bookstore.app import create_app  # noqa: E402
from bookstore.core.database import apply_migrations, get_engine  # noqa: E402
from bookstore.core.ratelimit import RATE_LIMIT_STORE  # noqa: E402
from bookstore.settings import Settings  # noqa: E402
from tests.helpers import PASSWORD, Account, ApiClient, unique_email  # noqa: E402
from tests.servers import RedisProcess, redis_server_binary  # noqa: E402

TEST_SECRET = "test-secret-" + "x" * 40
# Referencing tables before those they reference (CASCADE would empty them anyway).
_TABLES = (
    "idempotency_key",
    "order_item",
    "book_order",
    "book",
    "refresh_token",
    "auth_session",
    "sessions",
    "app_user",
)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _embedded_server is not None:
        _embedded_server.stop()
    shutil.rmtree(_temp_dir, ignore_errors=True)


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: real argon2id, at a cost that keeps the suite fast."""
    values: dict[str, Any] = {
        "secret_key": TEST_SECRET,
        "database_url": os.environ["DATABASE_URL"],
        "data_dir": _temp_dir / "data",
        "argon2_time_cost": 1,
        "argon2_memory_cost_kib": 8 * 1024,
        "argon2_parallelism": 1,
        "db_pool_min_size": 1,
        "db_pool_max_size": 5,
        # Far above anything a test sends; tests of the limits set their own.
        "rate_limit_requests": 1_000_000,
        "login_rate_limit_per_ip": 1_000_000,
        "login_rate_limit_per_email": 1_000_000,
        "register_rate_limit_per_ip": 1_000_000,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ["DATABASE_URL"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return make_settings()


@pytest_asyncio.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    await apply_migrations()
    application = create_app(settings)
    started, stop = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        # Entered and exited in one task: anyio cancel scopes must not change tasks.
        async with application.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run_lifespan())
    await started.wait()
    yield application
    stop.set()
    await task


@pytest_asyncio.fixture(autouse=True)
async def _empty_tables(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "app" in request.fixturenames or "client" in request.fixturenames or "database_url" in request.fixturenames:
        await get_engine().run_ddl(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE")


@pytest_asyncio.fixture
async def client(app: Litestar) -> AsyncIterator[ApiClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield ApiClient(http)


@pytest_asyncio.fixture
async def admin(client: ApiClient) -> Account:
    """An administrator, created the only way one can be: outside the API."""
    from bookstore.accounts.service import create_superuser

    user = await create_superuser(unique_email(), PASSWORD)
    tokens = await client.login(user.email)
    return Account(user.id, user.email, PASSWORD, tokens["access_token"], tokens["refresh_token"])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One redis-server for the session (emptied before each test that asks for ``redis_url``)."""
    server = RedisProcess(redis_server_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def disposable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, which the test may stop and restart."""
    server = RedisProcess(redis_server_binary(), tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def make_client(app: Litestar) -> AsyncIterator[Callable[..., Awaitable[ApiClient]]]:
    """Build clients of further app instances with their own settings (sharing the session's
    database pool), e.g. low rate limits or a Redis URL; their Redis clients are closed after."""
    async with contextlib.AsyncExitStack() as stack:

        async def build(**overrides: Any) -> ApiClient:
            instance = create_app(make_settings(**overrides))
            await stack.enter_async_context(instance.stores.get(RATE_LIMIT_STORE))
            transport = httpx.ASGITransport(app=instance)
            http = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://other"))
            return ApiClient(http)

        yield build
