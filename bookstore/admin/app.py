"""The admin panel's ASGI application: Piccolo admin at ``/admin/``, served by ``bookstore admin``.

Piccolo admin is a FastAPI application, so its host is the Starlette it is built on: a mount, a
redirect to it and a lifespan are all this needs (Litestar's mount hands a mounted app the bare
``/admin`` without the redirect the admin's relative asset URLs rely on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import msgspec

from bookstore.admin.login_limits import LoginLimits
from bookstore.admin.proxies import ForwardedRequest
from bookstore.admin.tables import AdminUserTable, table_configs
from bookstore.core.database import close_pool, open_pool
from bookstore.core.passwords import configure_password_hasher
from bookstore.core.ratelimit import RateLimiter, TrustedProxies
from bookstore.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ADMIN_PATH", "check_admin_settings", "create_admin_app", "create_admin_app_from_environment"]

_logger = logging.getLogger("bookstore.admin")

ADMIN_PATH: Final = "/admin/"
# Sessions last an hour, each request near the end adds 20 minutes, never beyond a working day.
_SESSION_EXPIRY: Final = timedelta(hours=1)
_MAX_SESSION_EXPIRY: Final = timedelta(hours=12)
_SESSION_SWEEP_SECONDS: Final = 3600
# The admin sees few requests: a small pool, whatever the API's is.
_POOL_MAX_SIZE: Final = 4
_ICON_CACHING: Final = {"cache-control": "public, max-age=86400"}
# The single-page app loads its scripts, styles and data from its own origin; it needs inline
# styles (Vue binds style attributes). The session cookie is SameSite=lax and the CSRF check
# compares Origin with the allowed hosts: a same-origin Referrer-Policy keeps Origin on its
# requests (with "no-referrer" a browser sends "Origin: null").
_HEADERS: Final = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def create_admin_app_from_environment() -> ASGIApp:
    """The admin application configured from the environment (Granian's factory)."""
    return create_admin_app(load_settings())


def check_admin_settings(settings: Settings) -> None:
    """Raise :class:`SettingsError` when the admin panel cannot run safely with ``settings``."""
    if settings.is_production and not settings.admin_allowed_hosts:
        raise SettingsError(
            "BOOKSTORE_ADMIN_ALLOWED_HOSTS must be set in production: the host names the admin panel is "
            "reached at (e.g. admin.example.com), which its CSRF check accepts as Origin"
        )


def create_admin_app(settings: Settings) -> ASGIApp:
    """Piccolo admin over the books, the orders (read-only) and the accounts, built once."""
    check_admin_settings(settings)
    # Imported here: only the admin process loads FastAPI, pydantic and Jinja.
    from piccolo_admin.endpoints import create_admin
    from piccolo_api.rate_limiting.middleware import InMemoryLimitProvider
    from piccolo_api.session_auth.tables import SessionsBase
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse, Response
    from starlette.routing import Mount, Route

    configure_password_hasher(
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_cost_kib,
        parallelism=settings.argon2_parallelism,
    )
    admin = create_admin(
        tables=table_configs(),
        auth_table=AdminUserTable,
        session_expiry=_SESSION_EXPIRY,
        max_session_expiry=_MAX_SESSION_EXPIRY,
        # Piccolo's own login limiter stays on, in this process's memory, with the service's
        # per-IP login budget. Without a block duration it would block an address until restart.
        rate_limit_provider=InMemoryLimitProvider(
            limit=settings.login_rate_limit_per_ip,
            timespan=settings.auth_rate_limit_window_seconds,
            block_duration=settings.auth_rate_limit_window_seconds,
        ),
        production=settings.is_production,
        allowed_hosts=list(settings.admin_allowed_hosts),
        site_name="Bookstore admin",
        # The tables are listed above; following foreign keys would add UserTable a second time.
        auto_include_related=False,
    )
    limiter = RateLimiter.from_settings(settings, user_of_token=_no_token_user)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await open_pool(msgspec.structs.replace(settings, db_pool_min_size=1, db_pool_max_size=_POOL_MAX_SIZE))
        sweeper = asyncio.create_task(_sweep_expired_sessions(SessionsBase))
        try:
            async with limiter.store:  # closes its Redis client
                yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await close_pool()

    host = Starlette(
        # The mount also redirects /admin to /admin/.
        routes=[
            Route("/", lambda _request: RedirectResponse(ADMIN_PATH)),
            # Browsers ask every origin for an icon; Piccolo admin ships none. No content, not a 404.
            Route("/favicon.ico", lambda _request: Response(status_code=204, headers=_ICON_CACHING)),
            Mount(ADMIN_PATH.rstrip("/"), app=admin),
        ],
        lifespan=lifespan,
    )
    # The last added runs first: the proxies' word is taken before anything reads the client's
    # address or scheme.
    host.add_middleware(LoginLimits, limiter=limiter, body_timeout_seconds=settings.body_read_timeout_seconds)
    host.add_middleware(ForwardedRequest, identity=limiter.identity, proxies=TrustedProxies(settings.trusted_proxies))
    # Outside Starlette's own error handling, so that every answer carries the headers.
    return _SecurityHeaders(host, secure_cookies=settings.is_production)


def _no_token_user(_token: str) -> int | None:
    # The admin has no bearer tokens: every request counts by client address.
    return None


async def _sweep_expired_sessions(sessions: Any) -> None:
    """Delete expired admin sessions now and every hour (Piccolo leaves them to a command)."""
    while True:
        try:
            await sessions.delete().where(sessions.expiry_date < datetime.now())
        except Exception as error:  # the database may be down; the next sweep retries
            _logger.warning("could not delete expired admin sessions: %s", error)
        await asyncio.sleep(_SESSION_SWEEP_SECONDS)


class _SecurityHeaders:
    """Adds the admin's security headers to every response, errors and redirects included; with
    ``secure_cookies``, marks every cookie ``Secure``. Piccolo does so for its session cookie in
    production, but not for its CSRF cookie, which a network attacker could then read or plant
    over plain HTTP."""

    def __init__(self, app: ASGIApp, *, secure_cookies: bool) -> None:
        self._app = app
        self._secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if self._secure_cookies:
                    headers = [_secure(name, value) for name, value in headers]
                message["headers"] = [*headers, *_HEADERS]
            await send(message)

        await self._app(scope, receive, send_with_headers)


def _secure(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if name.lower() != b"set-cookie" or any(
        attribute.strip().lower() == b"secure" for attribute in value.split(b";")[1:]
    ):
        return name, value
    return name, value + b"; Secure"
