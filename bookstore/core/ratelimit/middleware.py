"""The ASGI middleware that counts every request against its route's policy.

Our own middleware rather than a subclass of Litestar's ``RateLimitMiddleware``: that one's
counting is not atomic across workers (see ``store``), and overriding its ``__call__`` would
silently ignore most of its configuration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from bookstore.core.errors import DomainError
from bookstore.core.ratelimit.limiter import RateLimiter

__all__ = ["POLICY_OPT_KEY", "RateLimitMiddleware"]

POLICY_OPT_KEY = "rate_limit_policy"


class RateLimitMiddleware(ASGIMiddleware):
    """Counts each HTTP request with one atomic store operation and adds ``RateLimit-*`` headers.

    A route picks its policy with ``opt={POLICY_OPT_KEY: name}``; others use ``default_policy``.
    Paths matching ``exclude`` (regular expressions) are not counted.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, limiter: RateLimiter, *, default_policy: str, exclude: Sequence[str]) -> None:
        self.limiter = limiter
        self.default_policy = default_policy
        # Matched against the request path, as Litestar's own `exclude` options are (its
        # `exclude_path_pattern` will match route templates instead in 3.0).
        self._excluded = re.compile("|".join(exclude)) if exclude else None
        self.should_bypass_for_scope = self._is_excluded if self._excluded else None

    def _is_excluded(self, scope: Scope) -> bool:
        return self._excluded is not None and self._excluded.search(scope["path"]) is not None

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        limiter = self.limiter
        policy = limiter.policies[scope["route_handler"].opt.get(POLICY_OPT_KEY, self.default_policy)]
        key = limiter.identity.key_for(scope, client_ip_only=policy.client_ip_only)
        decision = await limiter.consume(policy.name, key)
        if decision is None:
            await next_app(scope, receive, send)
            return
        try:
            await next_app(scope, receive, _with_headers(send, decision.raw_headers()))
        except (HTTPException, DomainError) as error:
            # Raised by an inner middleware (JWT auth's 401), an error is answered by Litestar's
            # app-level exception handler, outside this `send`: its headers travel on the error.
            error.headers = {**decision.headers(), **(error.headers or {})}
            raise


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """``send`` adding ``headers`` to the response start, as raw pairs (cheaper than Litestar's
    ``MutableScopeHeaders``)."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = message.get("headers") or []
            # A stricter limit met inside the handler (login per email) speaks for itself.
            if not any(name == b"ratelimit-limit" for name, _ in present):
                message["headers"] = [*present, *headers]
        await send(message)

    return send_with_headers
