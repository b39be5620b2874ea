"""Request and response bodies of the accounts API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from bookstore.accounts.emails import MAX_EMAIL_LENGTH, validate_email
from bookstore.core.validation import field_error

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "Credentials",
    "CurrentUser",
    "LoginForm",
    "LoginRequest",
    "RefreshRequest",
    "TokenPair",
    "User",
    "UserUpdate",
]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128

# Upper bound before normalisation, so an absurd input is refused before any work is done.
EmailInput = Annotated[
    str,
    Meta(min_length=3, max_length=MAX_EMAIL_LENGTH + 64, examples=["reader@example.com"]),
]
Password = Annotated[
    str,
    Meta(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        pattern=r"^[^\x00]*$",
        description=f"{MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters, no NUL.",
        examples=["correct horse battery staple"],
    ),
]
# What a login may carry: anything short enough; the credential check decides the rest.
LoginSecret = Annotated[str, Meta(min_length=1, max_length=MAX_PASSWORD_LENGTH)]
# A login name is looked up in PostgreSQL, whose text cannot hold NUL: refused here, by name.
LoginName = Annotated[str, Meta(min_length=1, max_length=MAX_EMAIL_LENGTH + 64, pattern=r"^[^\x00]*$")]


def _normalised_email(value: str, field: str) -> str:
    try:
        return validate_email(value)
    except ValueError as error:
        raise field_error(field, str(error)) from None


class Credentials(Struct, forbid_unknown_fields=True):
    """Registration body: an email (trimmed, NFKC-normalised, case-insensitive) and a password."""

    email: EmailInput
    password: Password

    def __post_init__(self) -> None:
        self.email = _normalised_email(self.email, "email")


class LoginRequest(Struct, forbid_unknown_fields=True):
    """JSON login body."""

    email: LoginName
    password: LoginSecret


class LoginForm(Struct):
    """The OAuth2 password grant (``application/x-www-form-urlencoded``) used by the docs UI."""

    username: LoginName
    password: LoginSecret
    grant_type: Literal["password"] = "password"
    scope: str = ""
    client_id: str | None = None
    client_secret: str | None = None


class RefreshRequest(Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=4096)]


class TokenPair(Struct):
    access_token: str
    refresh_token: str
    expires_in: Annotated[int, Meta(description="Lifetime of the access token in seconds.")]
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret


class User(Struct):
    """A user as the API shows it (never the password hash)."""

    id: int
    email: str
    is_admin: bool
    created_at: datetime


class UserUpdate(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``PATCH /users/me``: absent fields stay as they are; a new password needs the current one."""

    email: EmailInput | UnsetType = UNSET
    password: Password | UnsetType = UNSET
    current_password: LoginSecret | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.email is not UNSET:
            self.email = _normalised_email(self.email, "email")
        if self.password is not UNSET and self.current_password is UNSET:
            raise field_error("current_password", "is required to change the password")


class CurrentUser(Struct, frozen=True):
    """The authenticated caller, as the auth middleware puts it on ``request.user``."""

    id: int
    email: str
    is_admin: bool
    session_id: str


def to_user(row: dict[str, Any]) -> User:
    """Build the public ``User`` from a ``app_user`` row."""
    return User(id=row["id"], email=row["email"], is_admin=row["admin"], created_at=row["created_at"])
