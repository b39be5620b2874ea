"""HTTP routes of the accounts domain: ``/api/v1/auth/*`` and ``/api/v1/users/me``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, TooManyRequestsException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from bookstore.accounts import service
from bookstore.accounts.emails import MAX_EMAIL_LENGTH, normalise_email
from bookstore.accounts.schemas import (
    MAX_PASSWORD_LENGTH,
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
from bookstore.core.http import is_json_media_type, require_json_body, require_utf8
from bookstore.core.metrics import LOGIN_LIMITED
from bookstore.core.openapi import PUBLIC
from bookstore.core.ratelimit import LOGIN_EMAIL_POLICY, LOGIN_POLICY, POLICY_OPT_KEY, REGISTER_POLICY, RateLimiter
from bookstore.core.tokens import TokenCodec
from bookstore.core.validation import split_field_error

__all__ = ["AuthController", "UsersController"]

_FORM = "application/x-www-form-urlencoded"
_NO_STORE = CacheControlHeader(no_store=True)


def _string(max_length: int) -> Schema:
    return Schema(type=OpenAPIType.STRING, min_length=1, max_length=max_length)


@dataclass
class _LoginOperation(Operation):
    """Documents the two encodings ``POST /auth/login`` accepts, which one ``data`` cannot."""

    def __post_init__(self) -> None:
        secret = _string(MAX_PASSWORD_LENGTH)
        login_name = _string(MAX_EMAIL_LENGTH + 64)
        self.request_body = RequestBody(
            required=True,
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["email", "password"],
                        properties={"email": login_name, "password": secret},
                        additional_properties=False,
                    )
                ),
                _FORM: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["username", "password"],
                        properties={
                            "username": login_name,
                            "password": secret,
                            "grant_type": Schema(type=OpenAPIType.STRING, enum=["password"]),
                            "scope": Schema(type=OpenAPIType.STRING),
                        },
                    )
                ),
            },
        )


async def _read_login(request: Request[Any, Any, Any]) -> tuple[str, str]:
    """The login name and password, from a JSON body or an OAuth2 password form.

    One operation takes both encodings, which a typed ``data`` parameter cannot express, so
    the body is decoded here with the same structs and errors Litestar would use.
    """
    media_type = request.content_type[0]
    try:
        if media_type == _FORM:
            form = msgspec.convert(dict((await request.form()).items()), LoginForm)
            return form.username, form.password
        if is_json_media_type(media_type):
            raw = await request.body()
            require_utf8(raw)
            body = msgspec.json.decode(raw, type=LoginRequest)
            return body.email, body.password
    except msgspec.ValidationError as error:
        message, key = split_field_error(error)
        raise invalid_input(message, key=key, source="body") from None
    except msgspec.DecodeError:
        raise ClientException("The request body is not valid JSON.") from None
    raise UnsupportedMediaTypeError(f"Send the credentials as application/json or {_FORM}.")


async def _count_password_check(rate_limiter: RateLimiter, normalised_email: str) -> None:
    """Count one password check against the account's limit (429 past it, 503 if Redis is down)."""
    await rate_limiter.consume(LOGIN_EMAIL_POLICY, normalised_email)


class AuthController(Controller):
    path = "/api/v1/auth"
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
            "Takes JSON `{email, password}` or the OAuth2 password grant form "
            "(`username`, `password`). Unknown email and wrong password give the same 401. "
            "Limited per client IP and per email (429); 503 while the limiter's store is down."
        ),
        status_code=HTTP_200_OK,
        exclude_from_auth=True,
        security=PUBLIC,
        operation_class=_LoginOperation,
        opt={POLICY_OPT_KEY: LOGIN_POLICY},
        responses=problem_responses(400, 401, 413, 415, 503),
    )
    async def log_in(
        self,
        request: Request[Any, Any, Any],
        codec: NamedDependency[TokenCodec],
        rate_limiter: NamedDependency[RateLimiter],
    ) -> TokenPair:
        email, password = await _read_login(request)
        # Per account as well as per IP: credential stuffing spreads one email over many IPs.
        try:
            await _count_password_check(rate_limiter, normalise_email(email))
        except TooManyRequestsException:
            LOGIN_LIMITED.inc()
            raise
        return await service.log_in(codec, email, password)

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
