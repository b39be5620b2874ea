"""How RateLimitPlugin wires the limiter into the app: outermost middleware, the
``rate_limiter`` dependency, the store in the registry and the start-up report."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from bookstore.app import create_app
from bookstore.core.ratelimit import RATE_LIMIT_STORE, RateLimitPlugin
from tests.conftest import make_settings
from tests.core.test_ratelimit import assert_limited
from tests.helpers import ApiClient
from tests.servers import RedisProcess

MakeClient = Callable[..., Awaitable[ApiClient]]
ME = "/api/v1/users/me"


async def test_requests_are_counted_before_their_token_is_checked(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=2, rate_limit_window_seconds=30)
    forged = {"Authorization": "Bearer not-a-token"}
    assert [(await client.get(ME, headers=forged)).status_code for _ in range(2)] == [401, 401]
    # A flood of bad tokens is refused by the limiter, before auth would look anything up.
    assert_limited(await client.get(ME, headers=forged))


async def test_answers_of_inner_middleware_carry_the_ratelimit_headers(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=5, rate_limit_window_seconds=30)
    response = await client.get(ME, headers={"Authorization": "Bearer not-a-token"})
    assert response.status_code == 401
    assert response.headers["ratelimit-limit"] == "5"
    assert response.headers["ratelimit-remaining"] == "4"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_the_plugin_registers_its_store_and_dependency() -> None:
    app = create_app(make_settings(redis_url=None))
    plugin = app.plugins.get(RateLimitPlugin)
    assert app.stores.get(RATE_LIMIT_STORE) is plugin.limiter.store
    assert "rate_limiter" in app.dependencies
    assert plugin.report_store in app.on_startup


def test_a_disabled_limiter_adds_no_middleware() -> None:
    enabled = create_app(make_settings(rate_limit_enabled=True))
    disabled = create_app(make_settings(rate_limit_enabled=False))
    assert len(enabled.middleware) == len(disabled.middleware) + 1


@pytest.mark.parametrize(
    ("redis", "level", "message"),
    [
        ("running", logging.INFO, "rate limits are shared through Redis"),
        ("stopped", logging.WARNING, "Redis is unreachable: reads are served unlimited, login and register answer 503"),
        (None, logging.WARNING, "no REDIS_URL: rate limits are counted per worker process"),
    ],
)
async def test_start_up_says_where_limits_are_counted(
    disposable_redis: RedisProcess, caplog: pytest.LogCaptureFixture, redis: str | None, level: int, message: str
) -> None:
    if redis == "stopped":
        disposable_redis.stop()
    app = create_app(make_settings(redis_url=disposable_redis.url if redis else None, redis_timeout_seconds=0.2))
    # Building the app configures logging afresh, which drops the handler caplog put on the root.
    logger = logging.getLogger("bookstore.ratelimit")
    logger.addHandler(caplog.handler)
    try:
        async with app.stores.get(RATE_LIMIT_STORE):
            await app.plugins.get(RateLimitPlugin).report_store(app)
    finally:
        logger.removeHandler(caplog.handler)
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [(level, message)]
