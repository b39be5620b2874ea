"""Rate limiting wired into a Litestar app as one plugin."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.plugins import InitPlugin
from litestar.stores.registry import StoreRegistry

from bookstore.core.ratelimit.limiter import API_POLICY, RateLimiter
from bookstore.core.ratelimit.middleware import RateLimitMiddleware

__all__ = ["RATE_LIMIT_STORE", "RateLimitPlugin"]

RATE_LIMIT_STORE = "rate_limit"
_logger = logging.getLogger("bookstore.ratelimit")


class RateLimitPlugin(InitPlugin):
    """Adds ``limiter`` to the app:

    - its store under ``RATE_LIMIT_STORE`` in the app's store registry, so the app's lifespan
      closes its Redis client;
    - when the limiter is enabled, :class:`RateLimitMiddleware` as the outermost middleware,
      before even JWT auth: a flood is refused before any token is looked up in the database;
    - the ``rate_limiter`` dependency, for handlers that count more (password checks per account);
    - a start-up log line saying where limits are counted.
    """

    def __init__(self, limiter: RateLimiter, *, exclude: Sequence[str], default_policy: str = API_POLICY) -> None:
        self.limiter = limiter
        self._exclude = exclude
        self._default_policy = default_policy

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        store = self.limiter.store
        if isinstance(app_config.stores, StoreRegistry):
            app_config.stores.register(RATE_LIMIT_STORE, store)
        else:
            app_config.stores = {**(app_config.stores or {}), RATE_LIMIT_STORE: store}
        if self.limiter.enabled:
            # Plugins run after on_app_init hooks, so this lands before JWT auth's middleware.
            middleware = RateLimitMiddleware(self.limiter, default_policy=self._default_policy, exclude=self._exclude)
            app_config.middleware.insert(0, middleware)
        app_config.dependencies["rate_limiter"] = Provide(self._provide_limiter, sync_to_thread=False, use_cache=True)
        app_config.on_startup.append(self.report_store)
        return app_config

    def _provide_limiter(self) -> RateLimiter:
        return self.limiter

    async def report_store(self, app: Litestar) -> None:
        """Log where limits are counted (an ``on_startup`` hook of the app)."""
        status = await self.limiter.store.status()
        if status == "redis":
            _logger.info("rate limits are shared through Redis")
        elif status == "unreachable":
            _logger.warning("Redis is unreachable: reads are served unlimited, login and register answer 503")
        else:
            _logger.warning("no REDIS_URL: rate limits are counted per worker process")
