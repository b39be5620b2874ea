"""Authentication of requests: Litestar's JWT middleware with the service's token rules.

Every route requires a valid access token unless its handler says ``exclude_from_auth=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware.authentication import AuthenticationResult
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware

from bookstore.accounts.schemas import CurrentUser
from bookstore.accounts.service import authenticate_session
from bookstore.core.tokens import (
    ACCESS,
    ALGORITHM,
    AUDIENCE,
    ISSUER,
    REQUIRED_CLAIMS,
    BookstoreToken,
    TokenCodec,
    token_identity,
)

__all__ = ["AUTH_PATH", "LOGIN_PATH", "TOKEN_PATH", "BookstoreJWTAuth", "create_jwt_auth"]

AUTH_PATH = "/api/v1/auth"
LOGIN_PATH = f"{AUTH_PATH}/login"
# The OAuth2 password grant form gets its own route: one operation with two request media types
# breaks generated clients (openapi-python-client's login module did not import).
TOKEN_PATH = f"{AUTH_PATH}/token"


async def retrieve_user(token: BookstoreToken, connection: ASGIConnection[Any, Any, Any, Any]) -> CurrentUser | None:
    # A refresh token must never pass as an access token (RFC 8725 3.12).
    identity = token_identity(token)
    if token.typ != ACCESS or identity is None:
        return None
    return await authenticate_session(*identity)


class BearerJWTMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, but insisting on the ``Bearer`` scheme (RFC 6750).

    The stock middleware takes whatever follows the first space, so ``Basic <jwt>`` would pass.
    """

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        scheme, _, credentials = connection.headers.get(self.auth_header, "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise NotAuthorizedException("Send the access token as 'Authorization: Bearer <token>'.")
        return await self.authenticate_token(encoded_token=credentials.strip(), connection=connection)


class BookstoreJWTAuth(JWTAuth[CurrentUser, BookstoreToken]):
    """JWT bearer auth, documented as the OAuth2 password flow so the docs UI can log in."""

    @property
    def openapi_components(self) -> Components:
        return Components(
            security_schemes={
                self.openapi_security_scheme_name: SecurityScheme(
                    type="oauth2",
                    description=f"Bearer access token from POST {LOGIN_PATH} (JSON) or {TOKEN_PATH} (OAuth2 form).",
                    flows=OAuthFlows(password=OAuthFlow(token_url=TOKEN_PATH, scopes={})),
                )
            }
        )


def create_jwt_auth(codec: TokenCodec, *, exclude: Sequence[str]) -> BookstoreJWTAuth:
    return BookstoreJWTAuth(
        token_secret=codec.secret,
        retrieve_user_handler=retrieve_user,
        token_cls=BookstoreToken,
        algorithm=ALGORITHM,
        default_token_expiration=timedelta(seconds=int(codec.access_ttl.total_seconds())),
        accepted_issuers=[ISSUER],
        accepted_audiences=[AUDIENCE],
        require_claims=list(REQUIRED_CLAIMS),
        exclude=list(exclude),
        openapi_security_scheme_name="BearerToken",
        authentication_middleware_class=BearerJWTMiddleware,
    )
