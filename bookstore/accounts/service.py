"""Account operations: registration, login sessions, token rotation and profile changes.

A login opens a *session*; its refresh tokens rotate (each is single-use) and all of its tokens,
access and refresh, die together when the session is revoked: on logout, on reuse of a spent
refresh token, on a password change (other sessions) and when the account is deleted.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from msgspec import UNSET

from bookstore.accounts.emails import normalise_email
from bookstore.accounts.schemas import CurrentUser, TokenPair, User, UserUpdate, to_user
from bookstore.accounts.tables import RefreshTokenTable, SessionTable, UserTable
from bookstore.core import passwords
from bookstore.core.database import fetch_one, is_unique_violation
from bookstore.core.errors import AuthenticationError, ConflictError, PermissionDeniedError
from bookstore.core.metrics import LOGIN_FAILURE, LOGIN_SUCCESS, REFRESH_TOKEN_REUSE
from bookstore.core.tokens import ACCESS, REFRESH, TokenCodec

__all__ = [
    "authenticate_session",
    "change_profile",
    "create_superuser",
    "delete_user",
    "end_sessions",
    "get_user",
    "log_in",
    "log_out",
    "refresh_session",
    "register_user",
]

_PUBLIC_COLUMNS = (UserTable.id, UserTable.email, UserTable.admin, UserTable.created_at)
_INVALID_CREDENTIALS = "The email or password is incorrect."
_INVALID_REFRESH = "The refresh token is invalid, expired or already used."


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _insert_user(email: str, password: str, *, admin: bool) -> User:
    # Login compares normal forms; an address stored in another form could never log in.
    email = normalise_email(email)
    password_hash = await passwords.hash_password(password)
    try:
        rows = await UserTable.insert(
            UserTable(username=email, email=email, password=password_hash, admin=admin, superuser=admin, active=True)
        ).returning(*_PUBLIC_COLUMNS)
    except asyncpg.UniqueViolationError as error:
        if is_unique_violation(error):
            raise ConflictError("An account with this email already exists.") from None
        raise
    return to_user(rows[0])


async def register_user(email: str, password: str) -> User:
    return await _insert_user(email, password, admin=False)


async def create_superuser(email: str, password: str) -> User:
    """Create an administrator who may also manage accounts in the admin panel (a superuser); the
    API never grants admin rights."""
    return await _insert_user(email, password, admin=True)


async def _issue_pair(codec: TokenCodec, user_id: int, session_id: UUID) -> TokenPair:
    refresh_token = codec.issue(REFRESH, user_id=user_id, session_id=session_id)
    await RefreshTokenTable.insert(
        RefreshTokenTable(
            token_hash=_digest(refresh_token),
            session=session_id,
            expires_at=_now() + codec.refresh_ttl,
        )
    )
    return TokenPair(
        access_token=codec.issue(ACCESS, user_id=user_id, session_id=session_id),
        refresh_token=refresh_token,
        expires_in=int(codec.access_ttl.total_seconds()),
    )


async def log_in(codec: TokenCodec, email: str, password: str) -> TokenPair:
    """Check the credentials and open a new session; unknown email and wrong password look alike."""
    user_id = await UserTable.login(email, password)
    if user_id is None:
        LOGIN_FAILURE.inc()
        raise AuthenticationError(_INVALID_CREDENTIALS)
    active = await UserTable.select(UserTable.id).where((UserTable.id == user_id) & (UserTable.active == True)).first()  # noqa: E712 - Piccolo builds SQL from ==
    if active is None:
        LOGIN_FAILURE.inc()
        raise AuthenticationError(_INVALID_CREDENTIALS)
    session_id = uuid4()
    async with SessionTable._meta.db.transaction():
        # Expired refresh tokens can never be used again; logins keep the table from growing.
        await RefreshTokenTable.delete().where(RefreshTokenTable.expires_at < _now())
        await SessionTable.insert(SessionTable(id=session_id, user=user_id))
        pair = await _issue_pair(codec, user_id, session_id)
    LOGIN_SUCCESS.inc()
    return pair


async def refresh_session(codec: TokenCodec, refresh_token: str) -> TokenPair:
    """Rotate a refresh token. A token presented twice revokes its whole session (theft signal)."""
    token = codec.decode(refresh_token, REFRESH)
    digest = _digest(refresh_token)
    now = _now()
    async with RefreshTokenTable._meta.db.transaction():
        # Claiming the token is one conditional UPDATE, so two concurrent refreshes cannot both win.
        claimed = (
            await RefreshTokenTable.update({RefreshTokenTable.used_at: now})
            .where(
                (RefreshTokenTable.token_hash == digest)
                & RefreshTokenTable.used_at.is_null()
                & (RefreshTokenTable.expires_at > now)
                & (RefreshTokenTable.session == token.sid)
            )
            .returning(RefreshTokenTable.session)
        )
        if claimed:
            session = (
                await SessionTable.select(SessionTable.user)
                .where(
                    (SessionTable.id == token.sid)
                    & SessionTable.revoked_at.is_null()
                    & (SessionTable.user.active == True)  # noqa: E712 - Piccolo builds SQL from ==
                )
                .first()
            )
            if session is not None and str(session["user"]) == token.sub:
                return await _issue_pair(codec, session["user"], UUID(token.sid))
    if not claimed:
        # Spent (or expired) token presented again: assume it leaked and end the session.
        REFRESH_TOKEN_REUSE.inc()
        await _revoke_sessions(SessionTable.id == token.sid)
    raise AuthenticationError(_INVALID_REFRESH)


async def _revoke_sessions(condition: Any) -> None:
    await SessionTable.update({SessionTable.revoked_at: _now()}).where(condition & SessionTable.revoked_at.is_null())


async def end_sessions(user_id: int) -> None:
    """Revoke every API session of the user (its access and refresh tokens die with them): what a
    password set by someone else, in the admin panel, must do."""
    await _revoke_sessions(SessionTable.user == user_id)


async def log_out(user: CurrentUser) -> None:
    await _revoke_sessions(SessionTable.id == user.session_id)


# Runs on every authenticated request, so it is one prepared statement (see core.database).
_AUTHENTICATE = (
    "SELECT app_user.id, app_user.email, app_user.admin FROM auth_session "
    'JOIN app_user ON app_user.id = auth_session."user" '
    'WHERE auth_session.id = $1 AND auth_session."user" = $2 '
    "AND auth_session.revoked_at IS NULL AND app_user.active"
)


async def authenticate_session(user_id: int, session_id: UUID) -> CurrentUser | None:
    """The caller of an access token, or None if the user or the session is gone (one query)."""
    row = await fetch_one(_AUTHENTICATE, session_id, user_id, read_only=True)
    if row is None:
        return None
    return CurrentUser(id=row["id"], email=row["email"], is_admin=row["admin"], session_id=str(session_id))


async def get_user(user_id: int) -> User:
    row = await UserTable.select(*_PUBLIC_COLUMNS).where(UserTable.id == user_id).first()
    if row is None:
        raise AuthenticationError("The account no longer exists.")
    return to_user(row)


async def change_profile(user: CurrentUser, changes: UserUpdate) -> User:
    """Apply a profile change; a new password needs the current one and ends the other sessions."""
    values: dict[Any, Any] = {}
    if changes.current_password is not UNSET:
        row = await UserTable.select(UserTable.password).where(UserTable.id == user.id).first()
        if not await passwords.verify_password(row["password"] if row else None, changes.current_password):
            raise PermissionDeniedError("The current password is incorrect.")
    if changes.password is not UNSET:
        values[UserTable.password] = await passwords.hash_password(changes.password)
    if changes.email is not UNSET:
        values[UserTable.email] = changes.email
        values[UserTable.username] = changes.email
    if not values:
        return await get_user(user.id)
    async with UserTable._meta.db.transaction():
        try:
            rows = await UserTable.update(values).where(UserTable.id == user.id).returning(*_PUBLIC_COLUMNS)
        except asyncpg.UniqueViolationError:
            raise ConflictError("An account with this email already exists.") from None
        if not rows:  # deleted by a concurrent request after this one was authenticated
            raise AuthenticationError("The account no longer exists.")
        if changes.password is not UNSET:
            await _revoke_sessions((SessionTable.user == user.id) & (SessionTable.id != user.session_id))
    return to_user(rows[0])


async def delete_user(user: CurrentUser) -> None:
    """Delete the account; its sessions and tokens go with it (ON DELETE CASCADE)."""
    await UserTable.delete().where(UserTable.id == user.id)
