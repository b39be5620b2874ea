"""What every request goes through first and last: its id, its security headers, its metrics and
its access line, in one ASGI wrapper around the whole application.

One wrapper rather than Litestar's ``PrometheusMiddleware``, its ``LoggingMiddleware`` and
``response_headers``: those run per route, after routing, so they never saw the router's own 404
and 405 or the answers given before routing (CORS preflights, the body guard's), and the first
two alone cost ~50 and ~55 µs a request (research for issue 9, §1, §3, §6). This wrapper, metrics
and access line included, adds ~59 k instructions (≈ 15-18 µs) to a request in multiprocess mode.
What depends only on the route is computed once per path template and kept.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from time import perf_counter
from typing import TYPE_CHECKING, Final

from litestar.enums import ScopeType

from bookstore.core.http import method_label
from bookstore.core.logging import request_id_context
from bookstore.core.metrics import UNMATCHED_PATH, observe_request

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.openapi.plugins import ScalarRenderPlugin
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from bookstore.core.logging import AccessLog
    from bookstore.core.ratelimit import TrustedProxies

__all__ = ["REQUEST_ID_HEADER", "RequestObserver", "SecurityHeaders", "docs_content_security_policy"]

REQUEST_ID_HEADER: Final = "X-Request-ID"
_REQUEST_ID_HEADER: Final = REQUEST_ID_HEADER.lower().encode()
# What an id passed on by a trusted proxy may be: UUIDs, hex, most tracing ids; anything else is
# replaced, so that no id can smuggle text into a header, a log line or a problem body.
_SAFE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,128}").fullmatch
# A response from an API route is JSON: nothing in it may load, run or be framed.
_API_CONTENT_SECURITY_POLICY: Final = "default-src 'none'; frame-ancestors 'none'"
_Header = tuple[bytes, bytes]
# The text of the page's ``<script id="api-reference" data-url=...>``, which only carries data
# attributes: Litestar's template indentation (litestar/openapi/plugins.py, ScalarRenderPlugin.render).
# Blocked, it would log a CSP violation; tests/core/test_observability.py checks it is still right.
_SCALAR_DATA_SCRIPT: Final = "\n" + " " * 16


def docs_content_security_policy(scalar: ScalarRenderPlugin) -> str:
    """The Content-Security-Policy of the documentation page.

    Scripts: Scalar's bundle from its pinned URL only (a whole CDN would let any package on it
    run), or ``'self'`` when this service serves it; and the page's two inline scripts by hash,
    not ``'unsafe-inline'``. Styles: ``'unsafe-inline'``, because Scalar inserts its components'
    styles, and the page's stylesheet. Images and fonts from this service or data: URLs, requests
    to this service only (the OpenAPI document, "try it"). Without internet access the local
    bundle renders with no CSP violation in Chromium (tests/test_docs_browser.py).
    """
    local = scalar.js_url.startswith("/")
    inline_scripts = [_SCALAR_DATA_SCRIPT]
    if options := re.search(r"<script>(.*)</script>", scalar.render_options(), re.DOTALL):
        inline_scripts.append(options.group(1))
    script_hashes = " ".join(_source_hash(script) for script in inline_scripts)
    script = "'self'" if local else scalar.js_url
    stylesheet = "data:" if scalar.css_url.startswith("data:") else scalar.css_url
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script} {script_hashes}",
            f"style-src 'unsafe-inline' {stylesheet}",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _source_hash(script: str) -> str:
    """A CSP source allowing the inline script whose text is ``script``."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


class SecurityHeaders(dict[str | None, tuple[list[_Header], bool]]):
    """The headers added to every response, by path template (None: not routed): ``nosniff``,
    ``no-referrer``, ``DENY`` framing, a Content-Security-Policy (the docs page's own under
    ``docs_path``), HSTS when ``hsts_seconds`` > 0; and whether ``Cache-Control: no-store`` is due
    (under ``private_paths``, unless the response chose its own).

    A dict filled on first use of each template (the app's routes, so it stays small): per request
    the lookup is one C-level dict hit, no Python call.
    """

    def __init__(
        self,
        *,
        hsts_seconds: int = 0,
        docs_path: str | None = None,
        docs_policy: str | None = None,
        private_paths: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._common: list[_Header] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if hsts_seconds > 0:
            self._common.append((b"strict-transport-security", f"max-age={hsts_seconds}".encode()))
        self._docs_path = docs_path
        self._docs_policy = (docs_policy or _API_CONTENT_SECURITY_POLICY).encode()
        self._private_paths = tuple(private_paths)

    def __missing__(self, path_template: str | None) -> tuple[list[_Header], bool]:
        path = path_template or ""
        in_docs = self._docs_path is not None and (path == self._docs_path or path.startswith(self._docs_path + "/"))
        policy = self._docs_policy if in_docs else _API_CONTENT_SECURITY_POLICY.encode()
        entry = ([*self._common, (b"content-security-policy", policy)], path.startswith(self._private_paths))
        self[path_template] = entry
        return entry

    def is_private(self, path: str) -> bool:
        """Whether a request for ``path`` that routing did not match is due ``no-store``: an
        error about a private path may still say something about it."""
        return path.startswith(self._private_paths)


class RequestObserver:
    """ASGI wrapper of the whole app (outside every other wrapper), per HTTP request:

    - its id: the ``X-Request-ID`` a trusted proxy sent (safe characters, at most 128), else 32
      random hex digits; set in :data:`~bookstore.core.logging.request_id_context` for the log
      lines and problem bodies of the request, and sent back as ``X-Request-ID``;
    - the security headers of :class:`SecurityHeaders`;
    - once the response is sent, the request counted and timed by method, path template and status
      (``observe_request``), and the access line, if ``access_log``.

    Path templates come from Litestar's router (``scope["path_template"]``), never the raw path;
    requests routing did not match (404, CORS preflights) count as ``<unmatched>``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trusted_proxies: TrustedProxies,
        security_headers: SecurityHeaders,
        access_log: AccessLog | None,
    ) -> None:
        self.app = app
        self._trusted_proxies = trusted_proxies
        self._any_trusted_proxy = bool(trusted_proxies)
        self._security_headers = security_headers
        self._access_log = access_log

    def _forwarded_request_id(self, scope: Scope) -> str | None:
        """The safe ``X-Request-ID`` of a request straight from a trusted proxy, else None."""
        for name, value in scope["headers"]:
            if name == _REQUEST_ID_HEADER:
                if _SAFE_REQUEST_ID(value) and self._trusted_proxies.trusts_peer(scope):
                    return bytes(value).decode("ascii")
                return None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        method = scope["method"]
        # The id a trusted proxy passed on, else 128 random bits (os.urandom: ~1 µs; uuid4: 3-5 µs).
        request_id = (self._any_trusted_proxy and self._forwarded_request_id(scope)) or os.urandom(16).hex()
        request_id_header = (_REQUEST_ID_HEADER, request_id.encode("ascii"))
        context_token = request_id_context.set(request_id)
        # What the server answers when the app fails before it starts a response.
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                template = scope.get("path_template")
                added, no_store = self._security_headers[template]
                if template is None:
                    no_store = self._security_headers.is_private(scope["path"])
                headers = [*message.get("headers", ()), *added, request_id_header]
                if no_store and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            seconds = perf_counter() - started
            path = scope.get("path_template") or UNMATCHED_PATH
            observe_request(method, path, status, seconds)
            if self._access_log is not None:
                self._access_log(request_id, method_label(method), path, status, seconds)
            request_id_context.reset(context_token)
