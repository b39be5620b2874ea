"""Shared state across processes: real ``bookstore serve`` servers on one PostgreSQL and one Redis.

Limits must hold across Granian workers and across instances, and a revoked token must die on
every instance at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from bookstore.core.ratelimit import API_POLICY
from tests.helpers import PASSWORD, bearer, book_payload, unique_email
from tests.servers import BookstoreProcess

LIMIT = 20
# Long enough that no burst can straddle a window boundary; tests end a window as Redis would.
WINDOW_SECONDS = 3600
BOOKS = "/api/v1/books"


@pytest.fixture
def limited_env(redis_url: str, database_url: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "BOOKSTORE_RATE_LIMIT_REQUESTS": str(LIMIT),
        "BOOKSTORE_RATE_LIMIT_WINDOW_SECONDS": str(WINDOW_SECONDS),
    }


@pytest.fixture
def two_workers(tmp_path: Path, limited_env: dict[str, str]) -> Iterator[BookstoreProcess]:
    server = BookstoreProcess(tmp_path, workers=2, env=limited_env)
    yield server
    server.stop()


@pytest.fixture
def two_instances(tmp_path: Path, limited_env: dict[str, str]) -> Iterator[tuple[BookstoreProcess, BookstoreProcess]]:
    first = BookstoreProcess(tmp_path / "a", env=limited_env)
    try:
        second = BookstoreProcess(tmp_path / "b", env=limited_env)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


async def burst(base_urls: list[str], count: int) -> list[httpx.Response]:
    """``count`` concurrent GETs, each on its own connection, spread over ``base_urls``."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=20) as client:
        return await asyncio.gather(*(client.get(f"{base_urls[n % len(base_urls)]}{BOOKS}") for n in range(count)))


async def end_windows(redis_url: str) -> int:
    """End the API policy's open windows the way Redis does when their time is up: the counter
    keys expire. Returns how many there were."""
    async with Redis.from_url(redis_url) as redis:
        keys = [key async for key in redis.scan_iter(match=f"*:{API_POLICY}:*")]
        for key in keys:
            # A timeout that has already passed: Redis removes the key at once.
            assert await redis.expire(key, 0)
    return len(keys)


async def test_limit_holds_across_two_worker_processes(two_workers: BookstoreProcess) -> None:
    responses = await burst([two_workers.base_url], 3 * LIMIT)
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == 2 * LIMIT, statuses
    limited = [response for response in responses if response.status_code == 429]
    assert all(1 <= int(response.headers["retry-after"]) <= WINDOW_SECONDS for response in limited)
    assert all(response.headers["content-type"].startswith("application/problem+json") for response in limited)


async def test_limit_lifts_when_the_window_ends(two_workers: BookstoreProcess, redis_url: str) -> None:
    assert [response.status_code for response in await burst([two_workers.base_url], LIMIT)] == [200] * LIMIT
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{two_workers.base_url}{BOOKS}")).status_code == 429
        assert await end_windows(redis_url) >= 1
        assert (await client.get(f"{two_workers.base_url}{BOOKS}")).status_code == 200


async def test_limit_counts_requests_to_both_instances(
    two_instances: tuple[BookstoreProcess, BookstoreProcess],
) -> None:
    first, second = two_instances
    responses = await burst([first.base_url, second.base_url], 2 * LIMIT)
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == LIMIT, statuses


def test_logout_on_one_instance_revokes_the_token_on_the_other(
    two_instances: tuple[BookstoreProcess, BookstoreProcess],
) -> None:
    first, second = two_instances
    email = unique_email()
    registered = httpx.post(f"{first.base_url}/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201
    tokens = httpx.post(f"{first.base_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    headers = bearer(tokens["access_token"])
    assert httpx.get(f"{second.base_url}/api/v1/users/me", headers=headers).status_code == 200

    assert httpx.post(f"{first.base_url}/api/v1/auth/logout", headers=headers).status_code == 204

    assert httpx.get(f"{second.base_url}/api/v1/users/me", headers=headers).status_code == 401
    refresh = httpx.post(f"{second.base_url}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


def test_both_instances_serve_the_same_data(two_instances: tuple[BookstoreProcess, BookstoreProcess]) -> None:
    """What replicas behind a proxy need: a write through one instance is what the other reads."""
    first, second = two_instances
    email = unique_email()
    assert httpx.post(f"{first.base_url}/api/v1/auth/register", json={"email": email, "password": PASSWORD}).is_success
    login = httpx.post(f"{first.base_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = bearer(login.json()["access_token"])
    created = httpx.post(f"{first.base_url}{BOOKS}", json=book_payload(price="12.50"), headers=headers)
    assert created.status_code == 201, created.text
    book = created.json()

    read_on_second = httpx.get(f"{second.base_url}{BOOKS}/{book['id']}")
    assert read_on_second.status_code == 200
    assert read_on_second.json() == book
    assert read_on_second.headers["etag"] == created.headers["etag"]

    updated = httpx.patch(
        f"{second.base_url}{BOOKS}/{book['id']}",
        json={"price": "15.00"},
        headers={**headers, "If-Match": read_on_second.headers["etag"]},
    )
    assert updated.status_code == 200, updated.text

    read_on_first = httpx.get(f"{first.base_url}{BOOKS}/{book['id']}")
    assert read_on_first.json() == updated.json()
    assert read_on_first.json()["price"] == "15.00"
    assert read_on_first.headers["etag"] == updated.headers["etag"] != created.headers["etag"]
