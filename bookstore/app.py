"""``create_app``: the one place where routes, auth, errors, OpenAPI and lifecycles are wired."""

from __future__ import annotations

import gc
import json
import logging
import secrets
from datetime import timedelta
from functools import partial
from pathlib import Path

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Tag
from litestar_granian import GranianPlugin

from bookstore.accounts.auth import create_jwt_auth
from bookstore.accounts.controller import AuthController, UsersController
from bookstore.books.controller import BooksController
from bookstore.core.connections import RequestBodyGuard
from bookstore.core.cors import CorsResponses, create_cors_config
from bookstore.core.cursors import CursorSigner
from bookstore.core.database import close_pool, open_pool
from bookstore.core.docs import create_scalar_bundle_route, create_scalar_plugin
from bookstore.core.errors import create_problem_details_plugin
from bookstore.core.health import HealthController
from bookstore.core.http import AllowHeaderForOptions, CanonicalPathIntegers, HeadAsGet
from bookstore.core.logging import create_access_log, create_logging_plugin
from bookstore.core.metrics import METRICS_PATH, MetricsPlugin
from bookstore.core.observability import RequestObserver, SecurityHeaders, docs_content_security_policy
from bookstore.core.openapi import ClosedStructSchemaPlugin
from bookstore.core.passwords import configure_password_hasher
from bookstore.core.ratelimit import RateLimiter, RateLimitPlugin, TrustedProxies
from bookstore.core.storage import FileStorage, LocalFileStorage
from bookstore.core.tokens import TokenCodec
from bookstore.covers.controller import CoverLimits, CoversController
from bookstore.orders.controller import OrdersController
from bookstore.settings import Settings, load_settings

__all__ = ["API_VERSION", "DOCS_PATH", "create_app", "create_openapi_config", "render_openapi_document"]

API_VERSION = "1.0.0"
DOCS_PATH = "/docs"
# Neither authenticated by JWT (/metrics checks its own token) nor rate-limited. Anchored: Litestar
# matches these with findall(), i.e. anywhere in the path.
_DOCS_AND_PROBES = [f"^{DOCS_PATH}(/|$)", "^/health(/|$)", f"^{METRICS_PATH}(/|$)"]
_logger = logging.getLogger("bookstore")


def create_openapi_config(docs_assets_dir: Path | None = None) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Bookstore API",
        version=API_VERSION,
        description=(
            "A catalogue of books anyone can browse; registered users log in with JWT bearer "
            "tokens to add and curate books, and to order them. Every error is "
            "`application/problem+json` (RFC 9457); invalid input is always answered with 400."
        ),
        path=DOCS_PATH,
        render_plugins=[create_scalar_plugin(docs_assets_dir)],
        create_examples=False,
        use_handler_docstrings=False,
        tags=[
            Tag(name="auth", description="Registration, login and token rotation."),
            Tag(name="users", description="The caller's own account."),
            Tag(name="books", description="The catalogue."),
            Tag(name="orders", description="Buying books: all or nothing, never beyond the stock, safe to retry."),
            Tag(name="health", description="Probes for load balancers and orchestrators."),
        ],
    )


def _tune_garbage_collector() -> None:
    """Exempt the start-up heap from collection and collect the young generation less often.

    The app's long-lived objects (routes, schemas, modules) would otherwise be traversed by
    every full collection, and request handling allocates enough to trigger a young collection
    every few requests; both showed up as ~5 % of a read's CPU and in its p99.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the application from ``settings`` (read from the environment when not given)."""
    settings = settings or load_settings()
    configure_password_hasher(
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_cost_kib,
        parallelism=settings.argon2_parallelism,
    )
    codec = TokenCodec(
        secret=settings.secret_key,
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
    )
    jwt_auth = create_jwt_auth(codec, exclude=_DOCS_AND_PROBES)

    page_cursors = CursorSigner(settings.secret_key, settings.page_cursor_ttl_seconds)
    openapi_config = create_openapi_config(settings.docs_assets_dir) if settings.docs_enabled else None
    docs_assets = (
        [create_scalar_bundle_route(settings.docs_assets_dir)] if openapi_config and settings.docs_assets_dir else []
    )

    def provide_codec() -> TokenCodec:
        return codec

    def provide_page_cursors() -> CursorSigner:
        return page_cursors

    cover_storage = LocalFileStorage(settings.covers_path)
    cover_limits = CoverLimits(max_bytes=settings.cover_max_bytes, max_pixels=settings.cover_max_pixels)

    def provide_cover_storage() -> FileStorage:
        return cover_storage

    def provide_cover_limits() -> CoverLimits:
        return cover_limits

    app = Litestar(
        route_handlers=[
            AuthController,
            UsersController,
            BooksController,
            CoversController,
            OrdersController,
            HealthController,
            *docs_assets,
        ],
        on_app_init=[jwt_auth.on_app_init],
        on_startup=[partial(open_pool, settings), _tune_garbage_collector],
        on_shutdown=[close_pool],
        dependencies={
            "codec": Provide(provide_codec, sync_to_thread=False, use_cache=True),
            "page_cursors": Provide(provide_page_cursors, sync_to_thread=False, use_cache=True),
            "cover_storage": Provide(provide_cover_storage, sync_to_thread=False, use_cache=True),
            "cover_limits": Provide(provide_cover_limits, sync_to_thread=False, use_cache=True),
        },
        plugins=[
            create_logging_plugin(settings),
            RateLimitPlugin(RateLimiter.from_settings(settings, codec.user_id_of), exclude=_DOCS_AND_PROBES),
            create_problem_details_plugin(),
            ClosedStructSchemaPlugin(),
            MetricsPlugin(token=settings.metrics_token),
            GranianPlugin(),
        ],
        openapi_config=openapi_config,
        cors_config=create_cors_config(settings.cors_origins),
        request_max_body_size=settings.max_request_body_bytes,
        middleware=[AllowHeaderForOptions, CanonicalPathIntegers],
    )
    # Ahead of routing, which Litestar offers no hook for: it would answer HEAD with 405.
    app.asgi_handler = HeadAsGet(app.asgi_handler)
    if settings.cors_origins:
        app.asgi_handler = CorsResponses(app.asgi_handler)
    # Around everything, the router's exception handler included: early answers raised by auth, the
    # rate limiter or routing are sent from there, and must go out through the guard's `send`.
    app.asgi_handler = RequestBodyGuard(
        app.asgi_handler, read_timeout=settings.body_read_timeout_seconds, drain_limit=settings.max_request_body_bytes
    )
    # Outermost: every answer, the guard's included, gets its request id and headers, and is counted.
    app.asgi_handler = RequestObserver(
        app.asgi_handler,
        trusted_proxies=TrustedProxies(settings.trusted_proxies),
        security_headers=_security_headers(settings, openapi_config),
        access_log=create_access_log(settings),
    )
    return app


def _security_headers(settings: Settings, openapi_config: OpenAPIConfig | None) -> SecurityHeaders:
    scalar = (
        next((plugin for plugin in openapi_config.render_plugins if isinstance(plugin, ScalarRenderPlugin)), None)
        if openapi_config
        else None
    )
    return SecurityHeaders(
        hsts_seconds=settings.hsts_seconds,
        docs_path=DOCS_PATH if scalar else None,
        docs_policy=docs_content_security_policy(scalar) if scalar else None,
        # Tokens and the caller's account: no cache may keep them.
        private_paths=(f"{AuthController.path}/", f"{UsersController.path}/"),
    )


def render_openapi_document() -> str:
    """The OpenAPI document as committed in ``docs/openapi.json`` (independent of the environment)."""
    app = create_app(Settings(secret_key=secrets.token_hex(32), docs_enabled=True))
    # Sorted keys: Litestar builds some maps from sets, whose order changes between processes.
    return json.dumps(app.openapi_schema.to_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
