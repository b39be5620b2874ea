"""Rate limiting in one process against a real Redis: limits, headers, identities, auth limits,
trusted proxies and the failure policy when Redis goes away or hangs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from bookstore.core.errors import ServiceUnavailableError
from bookstore.core.ratelimit import (
    LOGIN_POLICY,
    ClientIdentity,
    CountingRedisStore,
    RateLimiter,
    RateLimitPolicy,
    RateLimitUnavailableError,
    create_rate_limit_store,
)
from tests.helpers import PASSWORD, ApiClient, assert_problem, unique_email
from tests.servers import RedisProcess, statement_log

BOOKS = "/api/v1/books"
LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"

MakeClient = Callable[..., Awaitable[ApiClient]]


def assert_limited(response: httpx.Response) -> None:
    assert_problem(response, 429)
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-remaining"] == "0"


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def statuses(client: ApiClient, count: int, method: str = "GET", path: str = BOOKS, **kwargs: Any) -> list[int]:
    return [(await client.request(method, path, **kwargs)).status_code for _ in range(count)]


async def test_requests_past_the_limit_get_429_with_retry_after(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=3, rate_limit_window_seconds=30)
    assert await statuses(client, 3) == [200, 200, 200]
    assert_limited(await client.get(BOOKS))


async def test_responses_carry_ratelimit_headers(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=5, rate_limit_window_seconds=30)
    await client.get(BOOKS)
    response = await client.get(BOOKS)
    assert response.headers["ratelimit-limit"] == "5"
    assert response.headers["ratelimit-remaining"] == "3"
    assert response.headers["ratelimit-policy"] == "5; w=30"
    assert 1 <= int(response.headers["ratelimit-reset"]) <= 30


async def test_counts_live_in_redis(make_client: MakeClient, redis_url: str) -> None:
    """Two app instances on one Redis share one counter, as two workers or hosts would."""
    first = await make_client(redis_url=redis_url, rate_limit_requests=4, rate_limit_window_seconds=30)
    second = await make_client(redis_url=redis_url, rate_limit_requests=4, rate_limit_window_seconds=30)
    assert await statuses(first, 2) + await statuses(second, 2) == [200] * 4
    assert_limited(await first.get(BOOKS))
    assert_limited(await second.get(BOOKS))


async def test_without_redis_an_in_process_counter_limits(make_client: MakeClient) -> None:
    client = await make_client(redis_url=None, rate_limit_requests=2, rate_limit_window_seconds=30)
    assert await statuses(client, 2) == [200, 200]
    assert_limited(await client.get(BOOKS))


async def test_rate_limiting_can_be_switched_off(make_client: MakeClient) -> None:
    client = await make_client(rate_limit_enabled=False, rate_limit_requests=1)
    assert await statuses(client, 3) == [200, 200, 200]
    assert "ratelimit-limit" not in (await client.get(BOOKS)).headers


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/docs/openapi.json", "/docs"])
async def test_probes_and_docs_are_not_limited(make_client: MakeClient, redis_url: str, path: str) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=1)
    assert await statuses(client, 4, path=path) == [200] * 4


async def test_each_user_has_a_bucket_of_their_own(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=2, rate_limit_window_seconds=30)
    alice, bob = await client.account(), await client.account()
    assert await statuses(client, 2, path="/api/v1/users/me", headers=alice.headers) == [200, 200]
    assert_limited(await client.get("/api/v1/users/me", headers=alice.headers))
    assert (await client.get("/api/v1/users/me", headers=bob.headers)).status_code == 200
    # Anonymous callers from the same IP count separately from the users.
    assert (await client.get(BOOKS)).status_code == 200


async def test_an_invalid_token_counts_against_the_ip(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=2, rate_limit_window_seconds=30)
    forged = {"Authorization": "Bearer not-a-token"}
    assert await statuses(client, 2, headers=forged) == [200, 200]
    assert_limited(await client.get(BOOKS))


async def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=3, rate_limit_window_seconds=30)
    for n in range(3):
        response = await client.get(BOOKS, headers={"X-Forwarded-For": f"203.0.113.{n}"})
        assert response.status_code == 200
    assert_limited(await client.get(BOOKS, headers={"X-Forwarded-For": "198.51.100.7"}))


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(
        redis_url=redis_url, rate_limit_requests=2, rate_limit_window_seconds=30, trusted_proxies=("127.0.0.0/8",)
    )
    for n in range(4):
        # The right-most untrusted hop is the client; what it claims before that is ignored.
        headers = {"X-Forwarded-For": f"192.0.2.66, 203.0.113.{n}, 127.0.0.9"}
        assert (await client.get(BOOKS, headers=headers)).status_code == 200
    same_client = {"X-Forwarded-For": "203.0.113.1"}
    assert (await client.get(BOOKS, headers=same_client)).status_code == 200
    assert_limited(await client.get(BOOKS, headers=same_client))


async def test_login_is_limited_per_ip(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, login_rate_limit_per_ip=3)
    for _ in range(3):
        assert_problem(await client.post(LOGIN, json={"email": unique_email(), "password": "wrong password"}), 401)
    assert_limited(await client.post(LOGIN, json={"email": unique_email(), "password": "wrong password"}))


async def test_login_is_limited_per_email_across_ips(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, login_rate_limit_per_email=3, trusted_proxies=("127.0.0.1",))
    user = await client.register()
    for n in range(3):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        response = await client.post(LOGIN, json={"email": user["email"], "password": "guess"}, headers=headers)
        assert_problem(response, 401)
    # A fourth address, and the right password in another case: the account is still limited.
    headers = {"X-Forwarded-For": "198.51.100.1"}
    response = await client.post(LOGIN, json={"email": user["email"].upper(), "password": PASSWORD}, headers=headers)
    assert_limited(response)
    other = await client.register()
    assert (await client.post(LOGIN, json={"email": other["email"], "password": PASSWORD})).status_code == 200


async def test_register_is_limited_per_ip(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, register_rate_limit_per_ip=2)
    await client.register()
    await client.register()
    assert_limited(await client.post(REGISTER, json={"email": unique_email(), "password": PASSWORD}))


async def test_redis_outage_serves_reads_refuses_auth_and_recovers(
    make_client: MakeClient, disposable_redis: RedisProcess
) -> None:
    client = await make_client(
        redis_url=disposable_redis.url, rate_limit_requests=3, rate_limit_window_seconds=30, redis_timeout_seconds=0.2
    )
    account = await client.account()
    assert (await client.get(BOOKS)).headers["ratelimit-limit"] == "3"
    assert (await client.get("/health/ready")).json()["rate_limit_store"] == "redis"

    disposable_redis.stop()
    for _ in range(5):  # past the limit of 3: nothing is counted while Redis is away
        response = await client.get(BOOKS)
        assert response.status_code == 200
        assert "ratelimit-limit" not in response.headers
    assert (await client.get("/api/v1/users/me", headers=account.headers)).status_code == 200
    readiness = (await client.get("/health/ready")).json()
    assert readiness["rate_limit_store"] == "unreachable"
    assert readiness["rate_limit_fail_open"] == 6
    login = await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})
    assert_problem(login, 503)
    assert login.headers["retry-after"] == "5"
    assert_problem(await client.post(REGISTER, json={"email": unique_email(), "password": PASSWORD}), 503)

    disposable_redis.start()
    # The first request may meet a connection that died with the old server; then counting resumes.
    results = [await client.get(BOOKS) for _ in range(6)]
    assert all(response.status_code in {200, 429} for response in results)
    assert results[-1].status_code == 429
    assert (await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})).status_code == 200


async def test_a_hung_redis_costs_reads_at_most_its_timeout_and_refuses_logins(
    make_client: MakeClient, disposable_redis: RedisProcess
) -> None:
    import redis

    timeout = 0.2
    client = await make_client(redis_url=disposable_redis.url, redis_timeout_seconds=timeout)
    account = await client.account()
    assert (await client.get(BOOKS)).headers["ratelimit-limit"]
    pauser = redis.Redis(host="127.0.0.1", port=disposable_redis.port, socket_timeout=10)
    try:
        # Redis keeps accepting connections but answers nothing for 3 s; the requests below take
        # ~1 s. (Redis 7.0 blocks even CLIENT UNPAUSE during a pause of ALL commands.)
        pauser.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        reads = [await timed(client.get(BOOKS)) for _ in range(3)]
        reads.append(await timed(client.get("/api/v1/users/me", headers=account.headers)))
        login, login_elapsed = await timed(client.post(LOGIN, json={"email": account.email, "password": PASSWORD}))
        assert pauser.ping()  # answered when the pause is over
    finally:
        pauser.close()
    for response, elapsed in reads:
        assert response.status_code == 200
        assert "ratelimit-limit" not in response.headers  # served unlimited
        assert elapsed < timeout + 0.5
    assert_problem(login, 503)
    assert login.headers["retry-after"] == "5"
    assert login_elapsed < timeout + 0.5
    assert (await client.post(LOGIN, json={"email": account.email, "password": PASSWORD})).status_code == 200


async def test_refused_logins_log_one_error_per_interval_with_a_count(
    disposable_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    store = create_rate_limit_store(disposable_redis.url, 0.2)
    policy = RateLimitPolicy(LOGIN_POLICY, 5, 60, fail_closed=True, client_ip_only=True)
    limiter = RateLimiter([policy], ClientIdentity((), lambda token: None), store, enabled=True, clock=lambda: now[0])
    disposable_redis.stop()
    async with store:
        with caplog.at_level(logging.ERROR, logger="bookstore.ratelimit"):
            for seconds_later in (0, 1, 9, 10, 11):
                now[0] = 100.0 + seconds_later
                with pytest.raises(ServiceUnavailableError):
                    await limiter.consume(LOGIN_POLICY, "203.0.113.1")
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2, errors
    assert "refusing login (1 refused so far)" in errors[0]
    assert "refusing login (4 refused so far)" in errors[1]
    assert limiter.fail_closed_count == 5


async def test_an_authenticated_request_costs_one_redis_call_and_one_auth_query(
    make_client: MakeClient, redis_url: str, redis_server: RedisProcess, database_url: str
) -> None:
    import redis

    client = await make_client(redis_url=redis_url)
    account = await client.account()
    # POST /auth/logout's handler runs exactly one statement (the session update), so every
    # statement beyond that one per request is the authentication's; PostgreSQL's statement log
    # counts them, however the app sends them.
    monitor = redis.Redis(host="127.0.0.1", port=redis_server.port)
    try:
        monitor.config_resetstat()
        with statement_log(database_url) as log, log.capture() as statements:
            assert (await client.post("/api/v1/auth/logout", headers=account.headers)).status_code == 204
        commands = {
            name: stats["calls"]
            for name, stats in monitor.info("commandstats").items()
            if not name.startswith(("cmdstat_config", "cmdstat_info"))
        }
    finally:
        monitor.close()
    assert len(statements) == 2, statements
    assert "auth_session" in statements[0]
    assert "app_user" in statements[0]
    # One round trip, the Lua counter (EVALSHA); Redis also counts the commands the script runs
    # (a window's first hit sets its expiry). The monitor's own CONFIG/INFO calls are left out.
    assert commands == {"cmdstat_evalsha": 1, "cmdstat_incr": 1, "cmdstat_pttl": 1, "cmdstat_pexpire": 1}


async def test_repeated_forwarded_for_lines_count_as_one_list(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(
        redis_url=redis_url, rate_limit_requests=1, rate_limit_window_seconds=30, trusted_proxies=("127.0.0.1",)
    )
    # A proxy that appends its own line after the client's: only the last hop is believed.
    first = await client.get(BOOKS, headers=[("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-For", "203.0.113.7")])
    assert first.status_code == 200
    spoofed = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7")]
    assert_limited(await client.get(BOOKS, headers=spoofed))


def test_ipv4_mapped_peers_match_ipv4_trusted_proxies() -> None:
    identity = ClientIdentity(["10.0.0.0/8"], lambda token: None)
    scope: Any = {"client": ("::ffff:10.0.0.1", 4321), "headers": [(b"x-forwarded-for", b"203.0.113.7")]}
    assert identity.client_ip(scope) == "203.0.113.7"


async def test_an_unexpected_batch_failure_answers_every_waiting_request(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = create_rate_limit_store(redis_url, 0.2)
    assert isinstance(store, CountingRedisStore)

    async def broken(calls: list[tuple[str, int]]) -> list[Any]:
        raise ValueError("unexpected reply")

    monkeypatch.setattr(store, "_run_scripts", broken)
    async with store:
        results = await asyncio.wait_for(
            asyncio.gather(*(store.hit(f"k{n}", 10) for n in range(3)), return_exceptions=True), timeout=2
        )
    assert all(isinstance(result, RateLimitUnavailableError) for result in results)


async def test_a_password_check_in_a_profile_change_counts_as_a_login(make_client: MakeClient, redis_url: str) -> None:
    client = await make_client(redis_url=redis_url, login_rate_limit_per_email=3)
    account = await client.account()  # the login spends one attempt
    guess = {"password": "a new password 1", "current_password": "wrong guess"}
    for _ in range(2):
        assert_problem(await client.patch("/api/v1/users/me", json=guess, headers=account.headers), 403)
    assert_limited(await client.patch("/api/v1/users/me", json=guess, headers=account.headers))


async def test_a_second_authorization_header_does_not_move_a_user_to_the_ip_bucket(
    make_client: MakeClient, redis_url: str
) -> None:
    client = await make_client(redis_url=redis_url, rate_limit_requests=2, rate_limit_window_seconds=30)
    alice = await client.account()
    doubled = [("Authorization", f"Bearer {alice.access_token}"), ("Authorization", "Bearer garbage")]
    assert await statuses(client, 2, path="/api/v1/users/me", headers=doubled) == [200, 200]
    # Counted against alice, whose requests auth accepted: her bucket is full, the IP's is not.
    assert_limited(await client.get("/api/v1/users/me", headers=alice.headers))
    assert (await client.get(BOOKS)).status_code == 200
