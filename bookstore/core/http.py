"""Small HTTP building blocks Litestar leaves to the application: entity tags, preconditions,
RFC 8288 pagination links and the JSON content-type check for request bodies."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Litestar, Request
from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from bookstore.core.errors import UnsupportedMediaTypeError

__all__ = [
    "AllowHeaderForOptions",
    "etag_for_version",
    "if_match_versions",
    "is_json_media_type",
    "matches_if_none_match",
    "pagination_links",
    "require_json_body",
]

_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def etag_for_version(version: int) -> str:
    """The strong entity tag of a resource version, quoted as it appears in headers."""
    return f'"{version}"'


def _tags(header_value: str) -> list[str]:
    return [tag.strip() for tag in header_value.split(",") if tag.strip()]


def matches_if_none_match(header_value: str | None, version: int) -> bool:
    """True when ``If-None-Match`` names the current version (weak comparison, RFC 9110 13.1.2)."""
    if not header_value:
        return False
    current = etag_for_version(version)
    return any(tag == "*" or tag.removeprefix("W/") == current for tag in _tags(header_value))


def if_match_versions(header_value: str | None) -> list[int] | None:
    """Parse ``If-Match`` into the versions it accepts.

    ``None`` means no version condition: no header, or ``*`` (any current version, and every
    write already requires the resource to exist). Tags that are weak or not one of ours can never
    match (strong comparison, RFC 9110 13.1.1), so they yield an empty list and the write is
    refused with 412.
    """
    if header_value is None:
        return None
    versions: list[int] = []
    for tag in _tags(header_value):
        if tag == "*":
            return None
        inner = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else ""
        if inner.isascii() and inner.isdigit() and len(inner) <= 9:
            versions.append(int(inner))
    return versions


def pagination_links(request: Request[Any, Any, Any], *, offset: int, limit: int, total: int) -> str | None:
    """An RFC 8288 ``Link`` header value with ``next``/``prev`` pages, keeping the other filters."""
    params = [(key, value) for key, value in request.query_params.multi_items() if key not in {"offset", "limit"}]
    links = []
    if offset + limit < total:
        links.append((offset + limit, "next"))
    if offset > 0:
        links.append((max(0, min(offset - limit, total - limit)), "prev"))
    rendered = [
        f'<{request.url.path}?{urlencode([*params, ("limit", limit), ("offset", page_offset)])}>; rel="{rel}"'
        for page_offset, rel in links
    ]
    return ", ".join(rendered) or None


def is_json_media_type(media_type: str) -> bool:
    """True for ``application/json`` and its ``+json`` relatives (lower-case, without parameters,
    as ``Request.content_type`` gives them)."""
    return media_type == "application/json" or media_type.endswith("+json")


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: a body sent to a JSON route must be declared as JSON (else 415)."""
    if request.method in _METHODS_WITH_BODY and not is_json_media_type(request.content_type[0]):
        raise UnsupportedMediaTypeError("Send the request body as application/json.")


class AllowHeaderForOptions:
    """ASGI middleware: answer ``OPTIONS`` with every method of the path in ``Allow``.

    Litestar 2.x builds the automatic OPTIONS handler from only part of a path's handlers when
    a controller declares them separately (litestar#4169, fixed in 3.0), e.g. ``OPTIONS
    /api/v1/books`` said ``Allow: OPTIONS, POST``. The route itself knows all its methods.
    Other methods pass straight through (a ``before_send`` hook would wrap every response).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._allow_by_path: dict[str, str] | None = None

    def _allow_for(self, litestar_app: Litestar, path_template: str) -> str | None:
        if self._allow_by_path is None:
            self._allow_by_path = {
                route.path_format: ", ".join(sorted(route.methods))
                for route in litestar_app.routes
                if isinstance(route, HTTPRoute)
            }
        return self._allow_by_path.get(path_template)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "OPTIONS":
            await self.app(scope, receive, send)
            return
        allow = self._allow_for(scope["litestar_app"], scope.get("path_template", ""))

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and allow is not None:
                MutableScopeHeaders.from_message(message)["Allow"] = allow
            await send(message)

        await self.app(scope, receive, send_with_allow)
