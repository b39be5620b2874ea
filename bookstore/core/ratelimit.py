"""Rate limiting that holds across worker processes and instances.

Litestar's ``RateLimitMiddleware`` reads a request history from the store, appends to it and
writes it back under a per-process lock, so two Granian workers sharing Redis both admit
requests past the limit (litestar#4700). Here the count is one atomic operation instead: a
fixed window per client, counted by a Lua script in Redis (``INCR`` + ``PEXPIRE`` on the first
hit, so every process sees one counter), or by an in-process counter when no Redis is
configured. The window starts with a client's first request; ``RateLimit-Reset`` and
``Retry-After`` say when it ends.

When Redis is unreachable a policy either fails open (the request is served, a warning is
logged and counted) or fails closed (503): reads and writes fail open, login and registration
fail closed. Every Redis call is bounded by the client's socket timeouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from litestar import Litestar
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import RateLimitConfig, RateLimitMiddleware
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.types import Message, Receive, Scope, Send
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from bookstore.core.errors import ServiceUnavailableError

__all__ = [
    "API_POLICY",
    "LOGIN_EMAIL_POLICY",
    "LOGIN_POLICY",
    "POLICY_OPT_KEY",
    "RATE_LIMIT_STORE",
    "REGISTER_POLICY",
    "ClientIdentity",
    "CountingMemoryStore",
    "CountingRedisStore",
    "Decision",
    "RateLimitPolicy",
    "RateLimitUnavailableError",
    "RateLimiter",
    "WindowRateLimitConfig",
    "WindowRateLimitMiddleware",
    "create_rate_limit_store",
    "fail_open_count",
]

RATE_LIMIT_STORE = "rate_limit"
API_POLICY = "api"
LOGIN_POLICY = "login"
LOGIN_EMAIL_POLICY = "login-email"
REGISTER_POLICY = "register"
_logger = logging.getLogger("bookstore.ratelimit")

# KEYS[1] counter; ARGV[1] window in ms. Returns {count, ms until the window ends}.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class RateLimitUnavailableError(Exception):
    """The counter store could not be reached within its timeout."""


@dataclass(frozen=True)
class WindowCount:
    count: int
    reset_seconds: int


class CountingRedisStore(RedisStore):
    """Litestar's Redis store plus an atomic fixed-window counter.

    Hits that arrive in the same event-loop turn travel together in one pipeline: each is still
    its own atomic script call and one request still waits for one round trip, but a busy
    worker pays redis-py's per-command overhead once per batch instead of once per request
    (measured: it was a third of the CPU of a cached-row read).
    """

    def __init__(self, *args: Any, timeout_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeout_seconds = timeout_seconds
        self._hit_sha = hashlib.sha1(_HIT_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self._pending: list[tuple[str, int, asyncio.Future[WindowCount]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def hit(self, key: str, window_seconds: int) -> WindowCount:
        loop = asyncio.get_running_loop()
        result: asyncio.Future[WindowCount] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._send_pending)
        self._pending.append((self._make_key(key), window_seconds * 1000, result))
        return await result

    def _send_pending(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        # The loop keeps only weak references to tasks.
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, int, asyncio.Future[WindowCount]]]) -> None:
        try:
            replies = await self._run_scripts([(key, window_ms) for key, window_ms, _ in batch])
            counts = [WindowCount(int(count), max(1, math.ceil(int(ttl_ms) / 1000))) for count, ttl_ms in replies]
            if len(counts) != len(batch):
                raise RedisError(f"{len(counts)} replies to {len(batch)} calls")
        except BaseException as error:
            # Every waiting request must hear back, whatever went wrong (even cancellation).
            if not isinstance(error, RedisError | OSError):
                _logger.error("rate limit batch failed unexpectedly", exc_info=error)
            failure = RateLimitUnavailableError(str(error) or type(error).__name__)
            for _, _, result in batch:
                if not result.done():
                    result.set_exception(failure)
            if not isinstance(error, Exception):
                raise
            return
        for (_, _, result), count in zip(batch, counts, strict=True):
            if not result.done():
                result.set_result(count)

    async def _run_scripts(self, calls: list[tuple[str, int]]) -> list[Any]:
        """EVALSHA each call in one pipeline. Calls Redis answers with NOSCRIPT (a new or
        restarted server) are run once more after loading the script, and only those, so no hit
        is counted twice. The client's connect and socket timeouts bound each round trip."""
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            pipeline = self._redis.pipeline(transaction=False)
            for index in todo:
                key, window_ms = calls[index]
                pipeline.evalsha(self._hit_sha, 1, key, window_ms)
            answers = await pipeline.execute(raise_on_error=False)
            missing = []
            for index, answer in zip(todo, answers, strict=True):
                if isinstance(answer, NoScriptError) and attempt == 0:
                    missing.append(index)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    replies[index] = answer
            if not missing:
                return replies
            await self._redis.script_load(_HIT_SCRIPT)
            todo = missing
        raise RedisError("the rate limit script could not be loaded")

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_seconds * 2):
                return bool(await self._redis.ping())
        except (RedisError, OSError, TimeoutError):
            return False


class CountingMemoryStore(MemoryStore):
    """Litestar's memory store plus the same counter, for a single process without Redis."""

    _PRUNE_ABOVE = 10_000

    def __init__(self) -> None:
        super().__init__()
        self._windows: dict[str, tuple[int, float]] = {}

    async def hit(self, key: str, window_seconds: int) -> WindowCount:
        # No await between read and write: atomic within the event loop.
        now = time.monotonic()
        count, ends_at = self._windows.get(key, (0, 0.0))
        if ends_at <= now:
            count, ends_at = 0, now + window_seconds
            if len(self._windows) > self._PRUNE_ABOVE:
                self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        self._windows[key] = (count + 1, ends_at)
        return WindowCount(count + 1, max(1, math.ceil(ends_at - now)))

    async def ping(self) -> bool:
        return True


def create_rate_limit_store(redis_url: str | None, timeout_seconds: float) -> CountingRedisStore | CountingMemoryStore:
    """The shared Redis counter store, or an in-process one when no Redis is configured."""
    if redis_url is None:
        return CountingMemoryStore()
    client = Redis.from_url(
        redis_url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        # No retries: a retry would multiply the time a request can wait on a dead Redis.
        retry=Retry(NoBackoff(), 0),
    )
    return CountingRedisStore(
        redis=client, namespace="bookstore", handle_client_shutdown=True, timeout_seconds=timeout_seconds
    )


@dataclass(frozen=True)
class RateLimitPolicy:
    """``limit`` requests per ``window_seconds`` for each client under ``name``.

    ``client_ip_only`` counts by IP even when a token is sent (login and registration, where the
    caller has no account yet); ``fail_closed`` refuses requests (503) when the store is down.
    """

    name: str
    limit: int
    window_seconds: int
    fail_closed: bool = False
    client_ip_only: bool = False


@dataclass(frozen=True)
class Decision:
    policy: RateLimitPolicy
    count: int
    reset_seconds: int

    @property
    def allowed(self) -> bool:
        return self.count <= self.policy.limit

    def headers(self) -> dict[str, str]:
        """The RateLimit-* headers of the IETF draft, as Litestar names them."""
        return {
            "RateLimit-Policy": f"{self.policy.limit}; w={self.policy.window_seconds}",
            "RateLimit-Limit": str(self.policy.limit),
            "RateLimit-Remaining": str(max(0, self.policy.limit - self.count)),
            "RateLimit-Reset": str(self.reset_seconds),
        }

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """:meth:`headers` as ASGI header pairs, for adding to a response on its way out."""
        return [(name.lower().encode(), value.encode()) for name, value in self.headers().items()]


class _FailOpenCounter:
    """How many requests were let through because the counter store was unreachable."""

    def __init__(self) -> None:
        self.value = 0
        self.last_warning = float("-inf")


_WARN_EVERY_SECONDS = 10.0


fail_open_count = _FailOpenCounter()


def _header(scope: Scope, name: bytes) -> str:
    """A request header straight from the ASGI scope, repeated lines joined with commas as RFC 9110
    says they mean (building Litestar's Headers for the two the limiter needs cost more than the
    rest of the counting)."""
    return ",".join(bytes(value).decode("latin-1") for key, value in scope["headers"] if key == name)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in a peer or forwarded hop, IPv4-mapped IPv6 unwrapped; None if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientIdentity:
    """Who a request counts against: the user of a validly signed token, else the client IP.

    The token is only verified (signature, expiry), not looked up: counting must not cost a
    database query. ``X-Forwarded-For`` is believed only when the peer is one of
    ``trusted_proxies``; the client is then the right-most address in it that is not itself a
    trusted proxy.
    """

    def __init__(self, trusted_proxies: Sequence[str], user_of_token: Callable[[str], int | None]) -> None:
        self._trusted = [ipaddress.ip_network(network, strict=False) for network in trusted_proxies]
        self._user_of_token = user_of_token

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self._trusted)

    def client_ip(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self._trusted or not self._is_trusted(_ip(peer)):
            return peer
        address = peer
        for text in reversed(_header(scope, b"x-forwarded-for").split(",")):
            hop = _ip(text.strip())
            if hop is None:
                break
            address = str(hop)
            if not self._is_trusted(hop):
                break
        return address

    def key_for(self, scope: Scope, policy: RateLimitPolicy) -> str:
        if not policy.client_ip_only:
            scheme, _, token = _header(scope, b"authorization").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                user_id = self._user_of_token(token.strip())
                if user_id is not None:
                    return f"user:{user_id}"
        return f"ip:{self.client_ip(scope)}"


class RateLimiter:
    """The service's limits: named policies counted in the app's ``rate_limit`` store."""

    def __init__(self, policies: Sequence[RateLimitPolicy], identity: ClientIdentity) -> None:
        self.policies = {policy.name: policy for policy in policies}
        self.identity = identity

    async def consume(self, app: Litestar, policy_name: str, key: str) -> Decision | None:
        """Count one request of ``key``; raise 429 past the limit (503 if the store is down and
        the policy fails closed). Returns None when the store is down and the policy fails open."""
        policy = self.policies[policy_name]
        store = app.stores.get(RATE_LIMIT_STORE)
        if not isinstance(store, CountingRedisStore | CountingMemoryStore):
            raise TypeError(f"the {RATE_LIMIT_STORE!r} store cannot count atomically: {type(store).__name__}")
        try:
            window = await store.hit(f"{policy.name}:{key}", policy.window_seconds)
        except RateLimitUnavailableError as error:
            if policy.fail_closed:
                _logger.error("rate limit store unreachable, refusing %s: %s", policy.name, error)
                raise ServiceUnavailableError(
                    "This operation is temporarily unavailable; try again shortly.", headers={"Retry-After": "5"}
                ) from None
            fail_open_count.value += 1
            now = time.monotonic()
            if now - fail_open_count.last_warning >= _WARN_EVERY_SECONDS:  # one line, not one per request
                fail_open_count.last_warning = now
                _logger.warning(
                    "rate limit store unreachable, serving unlimited (%d so far): %s", fail_open_count.value, error
                )
            return None
        decision = Decision(policy, window.count, window.reset_seconds)
        if not decision.allowed:
            raise TooManyRequestsException(
                "Too many requests; retry after the number of seconds in Retry-After.",
                headers={**decision.headers(), "Retry-After": str(decision.reset_seconds)},
            )
        return decision


@dataclass
class WindowRateLimitConfig(RateLimitConfig):
    """Litestar's rate-limit configuration, counted by :class:`WindowRateLimitMiddleware`.

    A route picks its policy with ``opt={POLICY_OPT_KEY: name}``; others use ``default_policy``.
    ``rate_limit`` keeps Litestar's shape for its own introspection; the policies rule.
    """

    limiter: RateLimiter | None = None
    default_policy: str = "api"

    @classmethod
    def create(cls, limiter: RateLimiter, *, default_policy: str, exclude: list[str]) -> WindowRateLimitConfig:
        policy = limiter.policies[default_policy]
        return cls(
            rate_limit=("second", policy.limit),
            limiter=limiter,
            default_policy=default_policy,
            exclude=exclude,
            middleware_class=WindowRateLimitMiddleware,
            store=RATE_LIMIT_STORE,
        )


POLICY_OPT_KEY = "rate_limit_policy"


class WindowRateLimitMiddleware(RateLimitMiddleware):
    """Counts each request with one atomic store operation; see the module docstring."""

    config: WindowRateLimitConfig

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.config.limiter
        if limiter is None:
            raise RuntimeError("WindowRateLimitConfig needs a limiter")
        app: Litestar = scope["litestar_app"]
        policy_name = scope["route_handler"].opt.get(POLICY_OPT_KEY, self.config.default_policy)
        key = limiter.identity.key_for(scope, limiter.policies[policy_name])
        decision = await limiter.consume(app, policy_name, key)
        if decision is not None and self.config.set_rate_limit_headers:
            send = self._with_headers(send, decision.raw_headers())
        await self.app(scope, receive, send)

    @staticmethod
    def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = message.get("headers") or []
                # A stricter limit met inside the handler (login per email) speaks for itself.
                if not any(name == b"ratelimit-limit" for name, _ in present):
                    message["headers"] = [*present, *headers]
            await send(message)

        return send_with_headers
