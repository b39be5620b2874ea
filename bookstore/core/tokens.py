"""JWT access and refresh tokens: one claim set, two kinds that are never interchangeable.

Both are HS256 JWTs with ``sub`` (user id), ``exp``, ``iat``, ``jti``, ``iss``, ``aud``, ``typ``
(``access`` or ``refresh``, RFC 8725 3.11) and ``sid`` (the login session they belong to).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Self
from uuid import UUID, uuid4

from litestar.exceptions import NotAuthorizedException
from litestar.security.jwt import Token

from bookstore.core.errors import AuthenticationError
from bookstore.core.validation import parse_canonical_int

__all__ = [
    "ACCESS",
    "ALGORITHM",
    "AUDIENCE",
    "ISSUER",
    "MAX_USER_ID",
    "REFRESH",
    "REQUIRED_CLAIMS",
    "BookstoreToken",
    "TokenCodec",
    "token_identity",
]

TokenKind = Literal["access", "refresh"]
ACCESS: TokenKind = "access"
REFRESH: TokenKind = "refresh"
ALGORITHM = "HS256"
ISSUER = "bookstore"
AUDIENCE = "bookstore-api"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "jti", "iss", "aud", "typ", "sid")
# app_user.id is a PostgreSQL serial, i.e. an integer.
MAX_USER_ID = 2**31 - 1


# Verified tokens by (secret, algorithm, audience, issuer, claims, token): clients send the same
# token many times, and verifying it (PyJWT, datetime parsing, msgspec) costs more per request
# than the database query it authorises. Bounded; expiry is checked again on every hit.
_VERIFIED_MAX = 4096
_verified: dict[tuple[object, ...], BookstoreToken] = {}


@dataclass
class BookstoreToken(Token):
    """Litestar's token with our two claims at the top level of the payload."""

    typ: str = ACCESS
    sid: str = ""

    @classmethod
    def decode(
        cls,
        encoded_token: str,
        secret: str,
        algorithm: str,
        audience: str | Sequence[str] | None = None,
        issuer: str | Sequence[str] | None = None,
        require_claims: Sequence[str] | None = None,
        verify_exp: bool = True,
        verify_nbf: bool = True,
        strict_audience: bool = False,
    ) -> Self:
        """Litestar's verification, remembered per token string until the token expires."""
        key = (
            secret,
            algorithm,
            _frozen(audience),
            _frozen(issuer),
            _frozen(require_claims),
            verify_exp,
            verify_nbf,
            strict_audience,
            encoded_token,
        )
        cached = _verified.get(key)
        if cached is not None and isinstance(cached, cls) and cached.exp > datetime.now(UTC):
            return cached
        token = super().decode(
            encoded_token,
            secret,
            algorithm,
            audience=audience,
            issuer=issuer,
            require_claims=require_claims,
            verify_exp=verify_exp,
            verify_nbf=verify_nbf,
            strict_audience=strict_audience,
        )
        if len(_verified) >= _VERIFIED_MAX:
            del _verified[next(iter(_verified))]  # the oldest entry
        _verified[key] = token
        return token


def _frozen(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    # "x" and ["x"] verify alike; one key for both lets the limiter and the auth middleware share.
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


class TokenCodec:
    """Issues and verifies the service's tokens with one secret and fixed lifetimes."""

    def __init__(self, *, secret: str, access_ttl: timedelta, refresh_ttl: timedelta) -> None:
        self.secret = secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue(self, kind: TokenKind, *, user_id: int, session_id: UUID) -> str:
        ttl = self.access_ttl if kind == ACCESS else self.refresh_ttl
        token = BookstoreToken(
            sub=str(user_id),
            exp=datetime.now(UTC) + ttl,
            jti=uuid4().hex,
            iss=ISSUER,
            aud=AUDIENCE,
            typ=kind,
            sid=str(session_id),
        )
        return token.encode(self.secret, ALGORITHM)

    def user_id_of(self, encoded: str) -> int | None:
        """The user of a validly signed, unexpired access token, without any lookup; else None."""
        try:
            identity = token_identity(self.decode(encoded, ACCESS))
        except AuthenticationError:
            return None
        return identity[0] if identity else None

    def decode(self, encoded: str, kind: TokenKind) -> BookstoreToken:
        """Verify signature, algorithm, expiry, issuer, audience and kind; raise if any fails."""
        try:
            token = BookstoreToken.decode(
                encoded,
                secret=self.secret,
                algorithm=ALGORITHM,
                audience=AUDIENCE,
                issuer=ISSUER,
                require_claims=REQUIRED_CLAIMS,
            )
        except NotAuthorizedException:
            raise AuthenticationError(f"The {kind} token is invalid or has expired.") from None
        if token.typ != kind or token_identity(token) is None:
            raise AuthenticationError(f"The {kind} token is invalid or has expired.")
        return token


def token_identity(token: BookstoreToken) -> tuple[int, UUID] | None:
    """The (user id, session id) a token names, or None if either claim is malformed.

    A ``sub`` that is not the canonical text of a possible user id (e.g. beyond the id column's
    range, which PostgreSQL would refuse with an error) makes the token invalid: 401, not 400.
    """
    user_id = parse_canonical_int(token.sub, MAX_USER_ID)
    if user_id is None:
        return None
    try:
        return user_id, UUID(token.sid)
    except ValueError:
        return None
