"""Rate limiting that holds across worker processes and instances.

- ``store``: the atomic fixed-window counter (Redis, or process memory without Redis);
- ``identity``: who a request counts against (token user or client IP, proxies considered);
- ``limiter``: the named policies and what a hit decides (429, fail open or closed);
- ``middleware``: counts every request against its route's policy;
- ``plugin``: wires all of it into the app.

Routes choose a policy with ``opt={POLICY_OPT_KEY: name}``; handlers that count more (a
password check per account) take the ``rate_limiter`` dependency.
"""

from bookstore.core.ratelimit.identity import ClientIdentity, TrustedProxies
from bookstore.core.ratelimit.limiter import (
    API_POLICY,
    LOGIN_EMAIL_POLICY,
    LOGIN_POLICY,
    REGISTER_POLICY,
    Decision,
    RateLimiter,
    RateLimitPolicy,
)
from bookstore.core.ratelimit.middleware import POLICY_OPT_KEY, RateLimitMiddleware
from bookstore.core.ratelimit.plugin import RATE_LIMIT_STORE, RateLimitPlugin
from bookstore.core.ratelimit.store import (
    CountingMemoryStore,
    CountingRedisStore,
    CountingStore,
    RateLimitUnavailableError,
    StoreStatus,
    create_rate_limit_store,
)

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
    "CountingStore",
    "Decision",
    "RateLimitMiddleware",
    "RateLimitPlugin",
    "RateLimitPolicy",
    "RateLimitUnavailableError",
    "RateLimiter",
    "StoreStatus",
    "TrustedProxies",
    "create_rate_limit_store",
]
