"""Admin logins count against the service's own login limits: per client IP and per account.

Piccolo admin has a login limiter of its own (kept on), but it counts in each process's memory
and cannot be backed by Redis (its provider interface is synchronous). This wrapper counts the
same Redis buckets the API's ``/auth/login`` counts, so guessing one account's password through
the admin and the API together meets one limit. Password changes (which check the current
password) count per IP as well.

A login body is read here, within the body deadline, and handed on re-encoded from what was read
(JSON for ``application/json``, a form for a form): Piccolo reads a body its own way (JSON first,
whatever the content type, in any encoding ``json.loads`` guesses), so a body that read
differently here and there would let a login count against one account and try another. Bodies
Piccolo would answer with a 500 (not UTF-8, not an object, NUL or unpaired surrogates) get a 4xx.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlencode

import msgspec
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException

from bookstore.accounts.emails import normalise_email
from bookstore.core.errors import PROBLEM_MEDIA_TYPE, DomainError, ProblemDetails
from bookstore.core.ratelimit import LOGIN_EMAIL_POLICY, LOGIN_POLICY

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPReceiveMessage, HTTPScope, Receive, Scope, Send

    from bookstore.core.ratelimit import RateLimiter

__all__ = ["CHANGE_PASSWORD_PATH", "LOGIN_PATH", "LoginLimits"]

# Piccolo admin's login endpoint answers under this prefix, whatever follows it.
LOGIN_PATH: Final = "/admin/public/login/"
CHANGE_PASSWORD_PATH: Final = "/admin/api/change-password"  # noqa: S105 - a URL path, not a password
# A login form is two short fields; anything longer is not one.
_MAX_LOGIN_BODY_BYTES: Final = 16 * 1024
_FORM: Final = "application/x-www-form-urlencoded"
_JSON: Final = "application/json"
_CREDENTIALS: Final = ("username", "password")


class _LoginRefusedError(Exception):
    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.problem = ProblemDetails(status=status, title=title, detail=detail)
        self.headers = headers or {}


class LoginLimits:
    """Counts every login attempt (per IP) and the account it names (per email), and every
    password change (per IP), before Piccolo admin sees them."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, body_timeout_seconds: float) -> None:
        self._app = app
        self._limiter = limiter
        self._body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        await self._handle(scope, receive, send)

    async def _handle(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        login = path.startswith(LOGIN_PATH)
        if not login and not path.startswith(CHANGE_PASSWORD_PATH):
            await self._app(scope, receive, send)
            return
        try:
            await self._consume(LOGIN_POLICY, self._limiter.identity.key_for(scope, client_ip_only=True))
            if not login:
                await self._app(scope, receive, send)
                return
            body = await self._read_body(receive)
            content_type, canonical, login_name = _canonical_login(_content_type(scope), body)
            if login_name:
                await self._consume(LOGIN_EMAIL_POLICY, normalise_email(login_name))
        except _LoginRefusedError as refused:
            await _send_problem(send, refused)
            return
        scope["headers"] = [
            *((name, value) for name, value in scope["headers"] if name not in {b"content-type", b"content-length"}),
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(canonical)).encode()),
        ]
        await self._app(scope, _replay(canonical, receive), send)

    async def _consume(self, policy_name: str, key: str) -> None:
        try:
            await self._limiter.consume(policy_name, key)
        except HTTPException as error:  # 429 past the limit
            raise _LoginRefusedError(error.status_code, "Too Many Requests", str(error.detail), error.headers) from None
        except DomainError as error:  # 503: the limits' store is down and logins fail closed
            raise _LoginRefusedError(error.status_code, "Service Unavailable", error.detail, error.headers) from None

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._body_timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        raise _LoginRefusedError(400, "Bad Request", "The client went away before sending the body.")
                    chunk = message["body"]
                    size += len(chunk)
                    if size > _MAX_LOGIN_BODY_BYTES:
                        raise _LoginRefusedError(
                            413, "Content Too Large", f"A login body is at most {_MAX_LOGIN_BODY_BYTES} bytes."
                        )
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _LoginRefusedError(
                408, "Request Timeout", f"The login body did not arrive within {self._body_timeout_seconds:g} seconds."
            ) from None


def _content_type(scope: HTTPScope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1").partition(";")[0].strip().lower()
    return ""


def _canonical_login(content_type: str, body: bytes) -> tuple[str, bytes, str | None]:
    """The content type and body to hand Piccolo, re-encoded from what was read, and the login
    name in it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _LoginRefusedError(400, "Bad Request", "A login body must be UTF-8.") from None
    if "\x00" in text:  # in no login; in UTF-16 text read as UTF-8, between every character
        raise _LoginRefusedError(400, "Bad Request", "A login body must not contain NUL characters.")
    fields: Any
    if content_type == _JSON:
        try:
            fields = json.loads(text)
        except json.JSONDecodeError:
            raise _LoginRefusedError(400, "Bad Request", "The login body is not JSON.") from None
        if not isinstance(fields, dict):
            raise _LoginRefusedError(400, "Bad Request", "A login body must be a JSON object.")
        _check_credentials(fields)
        canonical = json.dumps(fields).encode()
    elif content_type == _FORM:
        fields = {name: values[-1] for name, values in parse_qs(text, keep_blank_values=True).items()}
        _check_credentials(fields)
        canonical = urlencode(fields).encode()
    else:
        raise _LoginRefusedError(415, "Unsupported Media Type", f"Send the login as {_JSON} or as {_FORM}.")
    login_name: str | None = fields.get("username")
    return content_type, canonical, login_name


def _check_credentials(fields: dict[str, Any]) -> None:
    for name in _CREDENTIALS:
        value = fields.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _LoginRefusedError(400, "Bad Request", f"The {name} must be a string.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _LoginRefusedError(400, "Bad Request", f"The {name} must be valid Unicode text.") from None
        if "\x00" in value:
            raise _LoginRefusedError(400, "Bad Request", f"The {name} must not contain NUL characters.")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then the client's own messages."""
    pending = True

    async def replay() -> HTTPReceiveMessage:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # type: ignore[return-value]  # an HTTP request's receive

    return replay


async def _send_problem(send: Send, refused: _LoginRefusedError) -> None:
    body = msgspec.json.encode(refused.problem)
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in refused.headers.items()]
    await send({"type": "http.response.start", "status": refused.problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
