"""Small HTTP building blocks Litestar leaves to the application: entity tags, preconditions,
RFC 8288 pagination links, the checks of JSON request bodies, single and canonical values in
queries, canonical integers in paths, and HEAD and OPTIONS answered for every route."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any, cast
from urllib.parse import urlencode

from litestar import Litestar, Request
from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from bookstore.core.errors import UnsupportedMediaTypeError, invalid_input
from bookstore.core.validation import is_canonical_int, parse_canonical_int

__all__ = [
    "AllowHeaderForOptions",
    "CanonicalPathIntegers",
    "HeadAsGet",
    "cursor_links",
    "etag_for_version",
    "if_match_versions",
    "if_none_match_names",
    "is_json_media_type",
    "matches_if_none_match",
    "method_label",
    "require_canonical_ints",
    "require_json_body",
    "require_single_values",
    "require_utf8",
]

_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OTHER_METHOD = "OTHER"
# The version column is a PostgreSQL integer.
_MAX_VERSION = 2**31 - 1


def method_label(method: str) -> str:
    """The request method as logs and metrics show it: any method the service does not know is
    ``OTHER``, so a client cannot grow a label set or write an arbitrarily long line (Granian
    passes any token, hundreds of KB long, as the method)."""
    return method if method in _KNOWN_METHODS else _OTHER_METHOD


def etag_for_version(version: int) -> str:
    """The strong entity tag of a resource version, quoted as it appears in headers."""
    return f'"{version}"'


def _tags(header_value: str) -> list[str]:
    return [tag.strip() for tag in header_value.split(",") if tag.strip()]


def matches_if_none_match(header_value: str | None, version: int) -> bool:
    """True when ``If-None-Match`` names the current version (weak comparison, RFC 9110 13.1.2)."""
    return bool(header_value) and if_none_match_names(header_value, etag_for_version(version))


def if_none_match_names(header_value: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` names ``etag`` (quoted) or is ``*`` (weak comparison, RFC 9110 13.1.2)."""
    if not header_value:
        return False
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in _tags(header_value))


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
        # Entity tags compare as text: only our own spelling of a version ("7", never "07") matches.
        version = parse_canonical_int(inner, _MAX_VERSION)
        if version is not None:
            versions.append(version)
    return versions


def cursor_links(request: Request[Any, Any, Any], *, next_cursor: str | None, prev_cursor: str | None) -> str | None:
    """An RFC 8288 ``Link`` header value with the ``next``/``prev`` pages of a cursor-paginated
    listing: the request's own URL with ``cursor`` replaced (and ``offset`` dropped)."""
    params = [(key, value) for key, value in request.query_params.multi_items() if key not in {"offset", "cursor"}]
    rendered = [
        f'<{request.url.path}?{urlencode([*params, ("cursor", cursor)])}>; rel="{rel}"'
        for cursor, rel in ((next_cursor, "next"), (prev_cursor, "prev"))
        if cursor is not None
    ]
    return ", ".join(rendered) or None


def require_single_values(request: Request[Any, Any, Any], keys: Collection[str]) -> None:
    """400 for any of the query parameters ``keys`` given more than once.

    Litestar reads the last value of a repeated key and checks only that one: `sort=x&sort=title`
    would pass, and which of two values counts is a guess the client should not have to make.
    """
    given: set[str] = set()
    for key, _ in request.query_params.multi_items():
        if key in given and key in keys:
            raise invalid_input("must be given once", key=key, source="query")
        given.add(key)


def require_canonical_ints(request: Request[Any, Any, Any], *keys: str) -> None:
    """400 unless every value of the integer query parameters ``keys`` is written canonically.

    Litestar has converted and range-checked them with msgspec's lax rules ("1e2" is 100, "1.0"
    is 1); the text must also be canonical. Every value of a repeated key, not only the last one
    Litestar reads.
    """
    for key in keys:
        for text in request.query_params.getall(key, []):
            if not is_canonical_int(text):
                raise invalid_input(
                    "must be written with ASCII digits only (no sign, exponent, spaces or leading zeros)",
                    key=key,
                    source="query",
                )


def is_json_media_type(media_type: str) -> bool:
    """True for ``application/json`` and its ``+json`` relatives (lower-case, without parameters,
    as ``Request.content_type`` gives them)."""
    return media_type == "application/json" or media_type.endswith("+json")


def require_utf8(body: bytes) -> None:
    """400 unless ``body`` is UTF-8, as JSON must be (RFC 8259 8.1).

    msgspec raises ``UnicodeDecodeError``, not its ``DecodeError``, for invalid UTF-8 inside a
    JSON string (msgspec#714), which Litestar does not catch: that was a 500 with a traceback.
    """
    try:
        body.decode()
    except UnicodeDecodeError:
        raise invalid_input("must be UTF-8 encoded JSON", key=None, source="body") from None


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: a body sent to a JSON route must be declared as JSON (else 415),
    not be empty and be UTF-8 (else 400)."""
    if request.method in _METHODS_WITH_BODY:
        if not is_json_media_type(request.content_type[0]):
            raise UnsupportedMediaTypeError("Send the request body as application/json.")
        body = await request.body()
        if not body:
            # Litestar's own message for a missing body is the bare parameter name ("'data'").
            raise invalid_input("is empty; send a JSON document", key=None, source="body")
        require_utf8(body)


class CanonicalPathIntegers:
    """Route middleware: 400 for an integer path parameter not written canonically.

    Litestar parses ``{name:int}`` with Python's ``int()``, which also takes ``+1``, ``01``,
    ``0_1``, `` 1`` and ``1\\n`` (once percent-decoded) and other scripts' digits (U+0661
    ARABIC-INDIC DIGIT ONE is 1), so one book had many URLs. The path segment must be the parsed
    number's own text: per integer parameter one ``rsplit``, one ``str()`` and one comparison.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path_params: Mapping[str, object] = scope["path_params"]
        if path_params:
            path, path_template = scope["path"], scope["path_template"]
            for name, value in path_params.items():
                if type(value) is int and path.rsplit("/", _segments_from_end(path_template, name))[1] != str(value):
                    raise invalid_input(
                        "must be written with ASCII digits only (no sign, spaces or leading zeros)",
                        key=name,
                        source="path",
                    )
        await self.app(scope, receive, send)


@lru_cache(maxsize=256)
def _segments_from_end(path_template: str, name: str) -> int:
    """Where ``{name}`` is in a route's path, counted from the end (the last segment is 1)."""
    segments = path_template.split("/")
    return len(segments) - segments.index(f"{{{name}}}")


class HeadAsGet:
    """Answer ``HEAD`` on every GET route like ``GET``, without the body (RFC 9110 9.3.2).

    Litestar 2 routes HEAD only to handlers declared for it (405 otherwise), and refuses HEAD on
    a handler whose response has a body. This wraps the app's ASGI handler, ahead of routing:
    a HEAD request is routed, authenticated, rate limited and answered as a GET, with the same
    status and headers (``Content-Length`` included, as RFC 9110 allows), and the body dropped.
    Any other request costs one comparison. It takes over HEAD entirely: a route's own HEAD
    handler would never be reached (none has one).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "HEAD":
            await self.app(scope, receive, send)
            return

        get_scope = cast("Scope", {**scope, "method": "GET"})

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            elif "path_template" in get_scope:
                # Routed by now: the observer outside heads, counts and logs the response by its route.
                scope["path_template"] = get_scope["path_template"]
            await send(message)

        await self.app(get_scope, receive, send_without_body)


class AllowHeaderForOptions:
    """ASGI middleware: answer ``OPTIONS`` with every method of the path in ``Allow`` (HEAD too
    wherever there is GET, see :class:`HeadAsGet`).

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
                route.path_format: ", ".join(sorted(route.methods | ({"HEAD"} if "GET" in route.methods else set())))
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
