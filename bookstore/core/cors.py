"""Cross-origin calls from browser pages (``BOOKSTORE_CORS_ORIGINS``): Litestar's CORS middleware for
the listed origins, and what it leaves undone (refusals as problem+json, ``Vary: Origin``).

Off unless origins are listed. Credentials (cookies, TLS client certificates) are never allowed: the
API authenticates with a bearer token the page sends itself, which needs none, and ``*`` with
credentials would let every site act as its visitors.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Final

import msgspec
from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType

from bookstore.core.errors import PROBLEM_MEDIA_TYPE, ProblemDetails
from bookstore.core.logging import request_id_context
from bookstore.core.observability import REQUEST_ID_HEADER

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

__all__ = ["CorsResponses", "create_cors_config"]

# The request headers the API reads, besides those CORS always allows.
_REQUEST_HEADERS: Final = ["authorization", "content-type", "if-match", "if-none-match", "idempotency-key"]
# The response headers a page may read, besides those CORS always shows (Content-Type, Cache-Control …).
_RESPONSE_HEADERS: Final = [
    "etag",
    "link",
    "location",
    "retry-after",
    "www-authenticate",
    REQUEST_ID_HEADER,
    "ratelimit-limit",
    "ratelimit-policy",
    "ratelimit-remaining",
    "ratelimit-reset",
]
# Litestar's refusal of a preflight: 400, text/plain, "Disallowed CORS Origin, headers" and the like.
_REFUSAL_PREFIX: Final = b"Disallowed CORS "
_BODY_HEADERS: Final = frozenset({b"content-type", b"content-length"})


def create_cors_config(origins: Sequence[str]) -> CORSConfig | None:
    """The CORS configuration for ``origins`` (exact origins, or ``["*"]``); None without any."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=_REQUEST_HEADERS,
        expose_headers=_RESPONSE_HEADERS,
        allow_credentials=False,
    )


def _refusal_problem(text: bytes) -> bytes:
    refused = text.removeprefix(_REFUSAL_PREFIX).decode("latin-1").strip().lower()
    problem = ProblemDetails(
        status=HTTPStatus.BAD_REQUEST,
        title=HTTPStatus.BAD_REQUEST.phrase,
        detail=f"This cross-origin request is not allowed (refused: {refused}).",
        request_id=request_id_context.get(),
    )
    return msgspec.json.encode(problem)


class CorsResponses:
    """ASGI wrapper of the app, installed only with CORS on, for what Litestar's CORS middleware
    leaves undone:

    - it refuses a preflight with a ``text/plain`` 400; the API answers every error as
      problem+json, so the refusal is rewritten (only ``OPTIONS`` requests are looked at);
    - it says ``Vary: Origin`` only on responses to allowed origins; a shared cache could then
      serve a response without ``Access-Control-Allow-Origin`` to an allowed page, so every
      response says it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        preflight = scope["method"] == "OPTIONS"
        held_start: HTTPResponseStartEvent | None = None

        async def send_with_vary(message: Message) -> None:
            nonlocal held_start
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"vary" for name, _ in headers):
                    headers.append((b"vary", b"Origin"))
                message["headers"] = headers
                if preflight and message["status"] == HTTPStatus.BAD_REQUEST:
                    # Held until the body shows whether this is the CORS refusal.
                    held_start = message
                    return
            elif held_start is not None and message["type"] == "http.response.body":
                start, held_start = held_start, None
                body = message.get("body", b"")
                if body.startswith(_REFUSAL_PREFIX) and not message.get("more_body", False):
                    problem = _refusal_problem(body)
                    start["headers"] = [
                        *((name, value) for name, value in start["headers"] if name.lower() not in _BODY_HEADERS),
                        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                        (b"content-length", str(len(problem)).encode()),
                    ]
                    message = {"type": "http.response.body", "body": problem, "more_body": False}
                await send(start)
            await send(message)

        await self.app(scope, receive, send_with_vary)
