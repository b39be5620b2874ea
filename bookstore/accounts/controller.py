"""HTTP routes of the accounts domain: ``/api/v1/auth/*`` and ``/api/v1/users/me``."""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote_to_bytes

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.exceptions import TooManyRequestsException
from litestar.params import JSONBody, URLEncodedBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from bookstore.accounts import service
from bookstore.accounts.auth import AUTH_PATH, LOGIN_PATH, TOKEN_PATH
from bookstore.accounts.emails import normalise_email
from bookstore.accounts.schemas import (
    Credentials,
    CurrentUser,
    LoginForm,
    LoginRequest,
    RefreshRequest,
    TokenPair,
    User,
    UserUpdate,
)
from bookstore.core.errors import UnsupportedMediaTypeError, invalid_input, problem_responses
from bookstore.core.http import require_json_body
from bookstore.core.metrics import LOGIN_LIMITED
from bookstore.core.openapi import PUBLIC
from bookstore.core.ratelimit import LOGIN_EMAIL_POLICY, LOGIN_POLICY, POLICY_OPT_KEY, REGISTER_POLICY, RateLimiter
from bookstore.core.tokens import TokenCodec

__all__ = ["AuthController", "UsersController"]

_FORM = "application/x-www-form-urlencoded"
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
_NO_STORE = CacheControlHeader(no_store=True)


async def _require_json_credentials(request: Request[Any, Any, Any]) -> None:
    """``require_json_body``, pointing a sender of the OAuth2 password form at the route for it."""
    if request.content_type[0] == _FORM:
        raise UnsupportedMediaTypeError(
            f"Send the credentials as application/json, or the OAuth2 password form to {TOKEN_PATH}."
        )
    await require_json_body(request)


async def _require_form(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: 415 for anything but a UTF-8 form (Litestar would read another body
    as an empty form, and decode any charset as UTF-8); 400 for bytes that are not UTF-8.

    Litestar decodes the form's percent-escapes with replacement characters: two different invalid
    byte strings would reach the password check as the same password.
    """
    media_type, options = request.content_type
    if media_type != _FORM or options.get("charset", "utf-8").lower() not in _UTF8_NAMES:
        raise UnsupportedMediaTypeError(
            f"Send the OAuth2 password form as {_FORM} (UTF-8), or JSON credentials to {LOGIN_PATH}."
        )
    try:
        for pair in (await request.body()).split(b"&"):
            unquote_to_bytes(pair.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_input("must be UTF-8 once percent-decoded", key=None, source="body") from None


async def _count_password_check(rate_limiter: RateLimiter, normalised_email: str) -> None:
    """Count one password check against the account's limit (429 past it, 503 if Redis is down)."""
    await rate_limiter.consume(LOGIN_EMAIL_POLICY, normalised_email)


async def _log_in(codec: TokenCodec, rate_limiter: RateLimiter, login_name: str, password: str) -> TokenPair:
    """What both login routes do once the credentials are read."""
    # Per account as well as per IP: credential stuffing spreads one email over many IPs.
    try:
        await _count_password_check(rate_limiter, normalise_email(login_name))
    except TooManyRequestsException:
        LOGIN_LIMITED.inc()
        raise
    return await service.log_in(codec, login_name, password)


# The two login routes differ only in how the credentials arrive. The per-IP policy's bucket is
# per policy, not per route, so both count against the same limit.
_LOGIN_ROUTE: Final[dict[str, Any]] = {
    "status_code": HTTP_200_OK,
    "exclude_from_auth": True,
    "security": PUBLIC,
    "opt": {POLICY_OPT_KEY: LOGIN_POLICY},
    "responses": problem_responses(400, 401, 413, 415, 503),
}


class AuthController(Controller):
    path = AUTH_PATH
    tags = ["auth"]
    cache_control = _NO_STORE

    @post(
        "/register",
        operation_id="RegisterUser",
        summary="Create an account",
        description="Emails are trimmed, NFKC-normalised and compared case-insensitively.",
        exclude_from_auth=True,
        security=PUBLIC,
        before_request=require_json_body,
        opt={POLICY_OPT_KEY: REGISTER_POLICY},
        responses=problem_responses(400, 409, 413, 415, 503),
    )
    async def register(self, data: JSONBody[Credentials]) -> User:
        return await service.register_user(data.email, data.password)

    @post(
        "/login",
        operation_id="LogIn",
        summary="Log in and get an access and a refresh token",
        description=(
            f"Takes JSON `{{email, password}}`; the OAuth2 password form goes to `{TOKEN_PATH}`. "
            "Unknown email and wrong password give the same 401. "
            "Limited per client IP and per email (429); 503 while the limiter's store is down."
        ),
        before_request=_require_json_credentials,
        **_LOGIN_ROUTE,
    )
    async def log_in(
        self,
        data: JSONBody[LoginRequest],
        codec: NamedDependency[TokenCodec],
        rate_limiter: NamedDependency[RateLimiter],
    ) -> TokenPair:
        return await _log_in(codec, rate_limiter, data.email, data.password)

    @post(
        "/token",
        operation_id="IssueToken",
        summary="Log in with the OAuth2 password grant form",
        description=(
            f"The OAuth2 password grant (RFC 6749 4.3; `username` is the email), for OAuth2 clients and the "
            f"docs' Authorize button; the same token pair, limits and 401 as `{LOGIN_PATH}`."
        ),
        before_request=_require_form,
        **_LOGIN_ROUTE,
    )
    async def issue_token(
        self,
        data: URLEncodedBody[LoginForm],
        codec: NamedDependency[TokenCodec],
        rate_limiter: NamedDependency[RateLimiter],
    ) -> TokenPair:
        return await _log_in(codec, rate_limiter, data.username, data.password)

    @post(
        "/refresh",
        operation_id="RefreshTokens",
        summary="Exchange a refresh token for a new token pair",
        description="Each refresh token works once; presenting a spent one revokes its whole session.",
        status_code=HTTP_200_OK,
        exclude_from_auth=True,
        security=PUBLIC,
        before_request=require_json_body,
        responses=problem_responses(400, 401, 413, 415),
    )
    async def refresh(self, data: JSONBody[RefreshRequest], codec: NamedDependency[TokenCodec]) -> TokenPair:
        return await service.refresh_session(codec, data.refresh_token)

    @post(
        "/logout",
        operation_id="LogOut",
        summary="End the current session",
        description="Revokes the session's refresh tokens and its access tokens.",
        status_code=HTTP_204_NO_CONTENT,
        responses=problem_responses(401),
    )
    async def log_out(self, request: Request[CurrentUser, Any, Any]) -> None:
        await service.log_out(request.user)


class UsersController(Controller):
    path = "/api/v1/users"
    tags = ["users"]

    @get("/me", operation_id="GetCurrentUser", summary="Get the caller's account", responses=problem_responses(401))
    async def get_me(self, request: Request[CurrentUser, Any, Any]) -> User:
        return await service.get_user(request.user.id)

    @patch(
        "/me",
        operation_id="UpdateCurrentUser",
        summary="Change the caller's email or password",
        description=(
            "Send `email`, `password` or both (an empty change is 400). A new password requires "
            "`current_password` and ends every other session of the account."
        ),
        before_request=require_json_body,
        responses=problem_responses(400, 401, 403, 409, 413, 415, 503),
    )
    async def update_me(
        self,
        request: Request[CurrentUser, Any, Any],
        data: JSONBody[UserUpdate],
        rate_limiter: NamedDependency[RateLimiter],
    ) -> User:
        if data.email is msgspec.UNSET and data.password is msgspec.UNSET:
            # As for books: a PATCH that changes nothing is a client mistake, not a no-op.
            raise invalid_input("name at least one field to change: email or password", key=None, source="body")
        if data.current_password is not msgspec.UNSET:
            # A password check like a login's: the same per-account limit, or a stolen access
            # token could guess the password at the (much higher) API rate.
            await _count_password_check(rate_limiter, request.user.email)
        return await service.change_profile(request.user, data)

    @delete(
        "/me",
        operation_id="DeleteCurrentUser",
        summary="Delete the caller's account",
        description="Books the account created stay in the catalogue without an owner.",
        responses=problem_responses(401),
    )
    async def delete_me(self, request: Request[CurrentUser, Any, Any]) -> None:
        await service.delete_user(request.user)
