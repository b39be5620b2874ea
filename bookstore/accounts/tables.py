"""Account tables: users, their login sessions and the refresh tokens of each session."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from piccolo.apps.user.tables import BaseUser
from piccolo.columns import UUID, Boolean, ForeignKey, OnDelete, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from bookstore.accounts.emails import MAX_EMAIL_LENGTH, normalise_email
from bookstore.accounts.schemas import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from bookstore.core import passwords

__all__ = ["RefreshTokenTable", "SessionTable", "UserTable"]


class UserTable(BaseUser, tablename="app_user"):
    """A user of the API and of the admin panel.

    Piccolo admin logs in through ``BaseUser``, so this subclasses it: ``username`` holds the
    normalised email (the login name) and passwords are argon2id hashes instead of Piccolo's
    PBKDF2. ``BaseUser`` hashes any password not in *its* format on ``__init__`` and
    ``__setattr__``, so both are overridden to leave argon2 hashes alone.
    """

    # The API's rules, for passwords set anywhere else too (the admin panel).
    _min_password_length = MIN_PASSWORD_LENGTH
    _max_password_length = MAX_PASSWORD_LENGTH

    username = Varchar(length=MAX_EMAIL_LENGTH, unique=True)
    email = Varchar(length=MAX_EMAIL_LENGTH, unique=True)
    active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())

    def __init__(self, **kwargs: Any) -> None:
        password = kwargs.get("password")
        if password and not password.startswith(passwords.ARGON2_PREFIX):
            kwargs["password"] = type(self).hash_password(password)
        Table.__init__(self, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "password" and isinstance(value, str) and not value.startswith(passwords.ARGON2_PREFIX):
            value = type(self).hash_password(value)
        Table.__setattr__(self, name, value)

    @classmethod
    def hash_password(cls, password: str, salt: str = "", iterations: int | None = None) -> str:
        if len(password) > cls._max_password_length:
            raise ValueError("The password is too long.")
        return passwords.hash_password_sync(password)

    @classmethod
    def _validate_password(cls, password: str) -> None:
        if password and password.startswith(passwords.ARGON2_PREFIX):
            raise ValueError("Do not pass a hashed password.")
        if "\x00" in password:
            raise ValueError("The password must not contain NUL characters.")
        super()._validate_password(password)

    @classmethod
    async def login(cls, username: str, password: str) -> int | None:
        """Return the id of the user if the credentials match, else ``None``.

        Used by the API's login and by Piccolo admin. Unknown users cost one dummy verification so
        timing does not reveal which emails are registered; verification runs off the event loop.
        """
        if len(password) > cls._max_password_length or len(username) > MAX_EMAIL_LENGTH:
            return None
        username = normalise_email(username)
        row = await cls.select(cls.id, cls.password).where(cls.username == username).first()
        stored_hash = row["password"] if row else None
        # With no row this verifies against a dummy hash: same cost, always False.
        verified = await passwords.verify_password(stored_hash, password)
        if row is None or not verified:
            return None
        changes: dict[Any, Any] = {cls.last_login: datetime.now(UTC).replace(tzinfo=None)}
        if passwords.needs_rehash(stored_hash or ""):
            changes[cls.password] = await passwords.hash_password(password)
        await cls.update(changes).where(cls.id == row["id"])
        user_id: int = row["id"]
        return user_id


class SessionTable(Table, tablename="auth_session"):
    """One login: the family of refresh tokens it rotates through, revoked as a whole.

    Access tokens carry the session id (``sid``), so revoking the session also stops its access
    tokens at once: authentication reads the user and the session in one query.
    """

    id = UUID(primary_key=True)
    user = ForeignKey(references=UserTable, on_delete=OnDelete.cascade, null=False, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)


class RefreshTokenTable(Table, tablename="refresh_token"):
    """A refresh token, stored only as its SHA-256 digest; single-use (``used_at``)."""

    token_hash = Varchar(length=64, unique=True)
    session = ForeignKey(references=SessionTable, on_delete=OnDelete.cascade, null=False, index=True)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
