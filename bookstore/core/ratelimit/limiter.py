"""The service's limits: named policies, each a fixed window per client, and what a hit decides.

The window starts with a client's first request; ``RateLimit-Reset`` and ``Retry-After`` say when
it ends. When the store is unreachable a policy either fails open (the request is served, a
warning is logged at most every few seconds and the request counted) or fails closed (503):
reads and writes fail open, login and registration fail closed (503, logged as an error at
most every few seconds, with the number refused so far).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from litestar.exceptions import TooManyRequestsException

from bookstore.core.errors import ServiceUnavailableError
from bookstore.core.metrics import (
    LOGIN_LIMITED,
    RATE_LIMIT_ALLOWED,
    RATE_LIMIT_LIMITED,
    RATE_LIMIT_STORE_UNREACHABLE,
)
from bookstore.core.ratelimit.identity import ClientIdentity
from bookstore.core.ratelimit.store import CountingStore, RateLimitUnavailableError, create_rate_limit_store
from bookstore.settings import Settings

__all__ = [
    "API_POLICY",
    "LOGIN_EMAIL_POLICY",
    "LOGIN_POLICY",
    "REGISTER_POLICY",
    "Decision",
    "RateLimitPolicy",
    "RateLimiter",
]

API_POLICY = "api"
LOGIN_POLICY = "login"
LOGIN_EMAIL_POLICY = "login-email"
REGISTER_POLICY = "register"
# While Redis is away every request would log the same line; one per interval says it all.
_LOG_EVERY_SECONDS = 10.0
_logger = logging.getLogger("bookstore.ratelimit")


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


class RateLimiter:
    """Counts hits of named policies in ``store``; ``enabled=False`` counts nothing."""

    def __init__(
        self,
        policies: Sequence[RateLimitPolicy],
        identity: ClientIdentity,
        store: CountingStore,
        *,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policies = {policy.name: policy for policy in policies}
        self.identity = identity
        self.store = store
        self.enabled = enabled
        self.fail_open_count = 0
        """Requests served unlimited because the store was unreachable."""
        self.fail_closed_count = 0
        """Requests refused (503) because the store was unreachable."""
        self._clock = clock
        self._last_logged = {"fail_open": float("-inf"), "fail_closed": float("-inf")}

    @classmethod
    def from_settings(cls, settings: Settings, user_of_token: Callable[[str], int | None]) -> RateLimiter:
        """The service's four policies (API, login per IP and per email, registration per IP)."""
        auth_window = settings.auth_rate_limit_window_seconds
        policies = [
            RateLimitPolicy(API_POLICY, settings.rate_limit_requests, settings.rate_limit_window_seconds),
            RateLimitPolicy(
                LOGIN_POLICY, settings.login_rate_limit_per_ip, auth_window, fail_closed=True, client_ip_only=True
            ),
            RateLimitPolicy(LOGIN_EMAIL_POLICY, settings.login_rate_limit_per_email, auth_window, fail_closed=True),
            RateLimitPolicy(
                REGISTER_POLICY, settings.register_rate_limit_per_ip, auth_window, fail_closed=True, client_ip_only=True
            ),
        ]
        return cls(
            policies,
            ClientIdentity(settings.trusted_proxies, user_of_token),
            create_rate_limit_store(settings.redis_url, settings.redis_timeout_seconds),
            enabled=settings.rate_limit_enabled,
        )

    async def consume(self, policy_name: str, key: str) -> Decision | None:
        """Count one request of ``key``; raise 429 past the limit (503 if the store is down and
        the policy fails closed). Returns None when nothing was counted: switched off, or the
        store is down and the policy fails open."""
        if not self.enabled:
            return None
        policy = self.policies[policy_name]
        try:
            window = await self.store.hit(f"{policy.name}:{key}", policy.window_seconds)
        except RateLimitUnavailableError as error:
            RATE_LIMIT_STORE_UNREACHABLE.inc()
            if policy.fail_closed:
                self._refuse(policy, error)
                raise ServiceUnavailableError(
                    "This operation is temporarily unavailable; try again shortly.", headers={"Retry-After": "5"}
                ) from None
            self._serve_unlimited(error)
            return None
        decision = Decision(policy, window.count, window.reset_seconds)
        if not decision.allowed:
            RATE_LIMIT_LIMITED.inc()
            if policy.name == LOGIN_POLICY:
                # Only the login routes (/auth/login and /auth/token) use the per-IP login policy. The
                # per-account one also guards password changes, so the login handler counts its
                # refusals itself.
                LOGIN_LIMITED.inc()
            raise TooManyRequestsException(
                "Too many requests; retry after the number of seconds in Retry-After.",
                headers={**decision.headers(), "Retry-After": str(decision.reset_seconds)},
            )
        RATE_LIMIT_ALLOWED.inc()
        return decision

    def _serve_unlimited(self, error: RateLimitUnavailableError) -> None:
        self.fail_open_count += 1
        if self._due("fail_open"):
            _logger.warning(
                "rate limit store unreachable, serving unlimited (%d so far): %s", self.fail_open_count, error
            )

    def _refuse(self, policy: RateLimitPolicy, error: RateLimitUnavailableError) -> None:
        self.fail_closed_count += 1
        if self._due("fail_closed"):
            _logger.error(
                "rate limit store unreachable, refusing %s (%d refused so far): %s",
                policy.name,
                self.fail_closed_count,
                error,
            )

    def _due(self, event: str) -> bool:
        """True, and the interval restarts, when ``event`` was last logged an interval ago or more."""
        now = self._clock()
        if now - self._last_logged[event] < _LOG_EVERY_SECONDS:
            return False
        self._last_logged[event] = now
        return True
