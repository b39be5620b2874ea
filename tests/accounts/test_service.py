"""The account operations (``bookstore.accounts.service``) called directly on the real database:
registration, login sessions, refresh rotation and reuse detection, logout, profile changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from litestar import Litestar

from bookstore.accounts.schemas import CurrentUser, TokenPair, User, UserUpdate
from bookstore.accounts.service import (
    authenticate_session,
    change_profile,
    create_superuser,
    delete_user,
    get_user,
    log_in,
    log_out,
    refresh_session,
    register_user,
)
from bookstore.accounts.tables import RefreshTokenTable, SessionTable, UserTable
from bookstore.core.errors import AuthenticationError, ConflictError, PermissionDeniedError
from bookstore.core.tokens import ACCESS, REFRESH, TokenCodec
from bookstore.settings import Settings
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD, unique_email

NEW_PASSWORD = "a brand new password"
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
def codec(app: Litestar, settings: Settings) -> TokenCodec:
    """Built as ``create_app`` builds it, with the test secret."""
    return TokenCodec(
        secret=TEST_SECRET,
        access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_seconds),
    )


@pytest.fixture
async def user(app: Litestar) -> User:
    return await register_user(unique_email(), PASSWORD)


async def session_of(codec: TokenCodec, pair: TokenPair) -> CurrentUser:
    """The caller the access token of ``pair`` authenticates as; fails if its session is gone."""
    token = codec.decode(pair.access_token, ACCESS)
    caller = await authenticate_session(int(token.sub), UUID(token.sid))
    assert caller is not None
    return caller


async def is_active(codec: TokenCodec, pair: TokenPair) -> bool:
    token = codec.decode(pair.access_token, ACCESS)
    return await authenticate_session(int(token.sub), UUID(token.sid)) is not None


# --- registration ---------------------------------------------------------------------------


async def test_register_user_returns_a_user_without_admin_rights(app: Litestar) -> None:
    email = unique_email()
    registered = await register_user(email, PASSWORD)
    assert (registered.email, registered.is_admin) == (email, False)
    assert await get_user(registered.id) == registered


async def test_register_user_stores_an_argon2id_hash_not_the_password(user: User) -> None:
    row = await UserTable.select(UserTable.password).where(UserTable.id == user.id).first()
    assert row is not None
    assert row["password"].startswith("$argon2id$")
    assert PASSWORD not in row["password"]


async def test_register_user_stores_the_email_in_its_normal_form(app: Litestar) -> None:
    # Also when a caller did not pass it through Credentials: login compares normal forms.
    registered = await register_user("  Ada.Lovelace@Example.COM ", PASSWORD)
    assert registered.email == "ada.lovelace@example.com"
    row = await UserTable.select(UserTable.username).where(UserTable.id == registered.id).first()
    assert row == {"username": "ada.lovelace@example.com"}


async def test_register_user_of_the_same_email_in_another_form_raises_conflict(user: User) -> None:
    with pytest.raises(ConflictError):
        await register_user(f" {user.email.upper()}", PASSWORD)
    assert await UserTable.count() == 1


async def test_register_user_with_a_taken_email_raises_conflict(user: User) -> None:
    with pytest.raises(ConflictError):
        await register_user(user.email, "another password")
    assert await UserTable.count() == 1


async def test_create_superuser_creates_an_admin(app: Litestar) -> None:
    admin = await create_superuser(unique_email(), PASSWORD)
    assert admin.is_admin is True


async def test_create_superuser_with_a_taken_email_raises_conflict(user: User) -> None:
    with pytest.raises(ConflictError):
        await create_superuser(user.email, PASSWORD)


# --- login ----------------------------------------------------------------------------------


async def test_log_in_opens_a_session_for_the_user(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    caller = await session_of(codec, pair)
    assert (caller.id, caller.email, caller.is_admin) == (user.id, user.email, False)
    assert pair.access_token != pair.refresh_token
    assert pair.expires_in == int(codec.access_ttl.total_seconds())
    assert codec.decode(pair.refresh_token, REFRESH).sid == caller.session_id


async def test_each_log_in_opens_its_own_session(codec: TokenCodec, user: User) -> None:
    first = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    second = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    assert first.session_id != second.session_id
    assert await SessionTable.count().where(SessionTable.user == user.id) == 2


async def test_log_in_normalises_the_email_it_is_given(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, f"  {user.email.upper()} ", PASSWORD)
    assert (await session_of(codec, pair)).id == user.id


async def test_wrong_password_and_unknown_email_raise_the_same_error(codec: TokenCodec, user: User) -> None:
    with pytest.raises(AuthenticationError) as wrong_password:
        await log_in(codec, user.email, "not the password")
    with pytest.raises(AuthenticationError) as unknown_email:
        await log_in(codec, unique_email(), PASSWORD)
    assert wrong_password.value.detail == unknown_email.value.detail
    assert wrong_password.value.headers == unknown_email.value.headers
    assert await SessionTable.count() == 0


async def test_log_in_of_an_inactive_user_is_refused_like_a_wrong_password(codec: TokenCodec, user: User) -> None:
    await UserTable.update({UserTable.active: False}).where(UserTable.id == user.id)
    with pytest.raises(AuthenticationError) as refused:
        await log_in(codec, user.email, PASSWORD)
    with pytest.raises(AuthenticationError) as wrong_password:
        await log_in(codec, user.email, "not the password")
    assert refused.value.detail == wrong_password.value.detail
    assert await SessionTable.count() == 0


async def test_log_in_prunes_expired_refresh_tokens(codec: TokenCodec, user: User) -> None:
    await log_in(codec, user.email, PASSWORD)
    await RefreshTokenTable.update({RefreshTokenTable.expires_at: LONG_AGO}, force=True)
    await log_in(codec, user.email, PASSWORD)
    assert await RefreshTokenTable.count() == 1


# --- refresh rotation -----------------------------------------------------------------------


async def test_refresh_session_returns_a_new_pair_in_the_same_session(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    rotated = await refresh_session(codec, pair.refresh_token)
    assert rotated.refresh_token != pair.refresh_token
    assert (await session_of(codec, rotated)).session_id == (await session_of(codec, pair)).session_id


async def test_rotated_refresh_token_can_be_refreshed_again(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    second = await refresh_session(codec, pair.refresh_token)
    third = await refresh_session(codec, second.refresh_token)
    assert await is_active(codec, third)


async def test_spent_refresh_token_is_refused(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    await refresh_session(codec, pair.refresh_token)
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, pair.refresh_token)


async def test_reusing_a_refresh_token_revokes_its_whole_session(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    rotated = await refresh_session(codec, pair.refresh_token)
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, pair.refresh_token)
    assert not await is_active(codec, rotated)
    assert await SessionTable.count().where(SessionTable.revoked_at.is_not_null()) == 1
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, rotated.refresh_token)


async def test_reusing_a_refresh_token_leaves_other_sessions_alone(codec: TokenCodec, user: User) -> None:
    stolen = await log_in(codec, user.email, PASSWORD)
    other = await log_in(codec, user.email, PASSWORD)
    await refresh_session(codec, stolen.refresh_token)
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, stolen.refresh_token)
    assert await is_active(codec, other)


async def test_concurrent_refreshes_of_one_token_let_exactly_one_win(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    results = await asyncio.gather(
        *(refresh_session(codec, pair.refresh_token) for _ in range(5)), return_exceptions=True
    )
    assert sum(isinstance(result, TokenPair) for result in results) == 1, results
    assert sum(isinstance(result, AuthenticationError) for result in results) == 4, results


async def test_expired_refresh_token_is_refused(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    await RefreshTokenTable.update({RefreshTokenTable.expires_at: LONG_AGO}, force=True)
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, pair.refresh_token)


async def test_refresh_session_refuses_an_access_token(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, pair.access_token)
    assert await is_active(codec, pair)


async def test_refresh_session_refuses_a_token_signed_with_another_secret(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    forger = TokenCodec(secret="another-secret-" + "y" * 40, access_ttl=codec.access_ttl, refresh_ttl=codec.refresh_ttl)
    session = await session_of(codec, pair)
    forged = forger.issue(REFRESH, user_id=user.id, session_id=UUID(session.session_id))
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, forged)


async def test_refresh_session_of_an_inactive_user_is_refused(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    await UserTable.update({UserTable.active: False}).where(UserTable.id == user.id)
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, pair.refresh_token)


async def test_refresh_session_of_a_logged_out_session_is_refused(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    await log_out(await session_of(codec, pair))
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, pair.refresh_token)


# --- logout and authentication --------------------------------------------------------------


async def test_log_out_ends_the_session(codec: TokenCodec, user: User) -> None:
    pair = await log_in(codec, user.email, PASSWORD)
    caller = await session_of(codec, pair)
    await log_out(caller)
    assert await authenticate_session(caller.id, UUID(caller.session_id)) is None


async def test_log_out_leaves_other_sessions_alone(codec: TokenCodec, user: User) -> None:
    leaving = await log_in(codec, user.email, PASSWORD)
    staying = await log_in(codec, user.email, PASSWORD)
    await log_out(await session_of(codec, leaving))
    assert await is_active(codec, staying)


async def test_authenticate_session_returns_the_caller(codec: TokenCodec, app: Litestar) -> None:
    admin = await create_superuser(unique_email(), PASSWORD)
    token = codec.decode((await log_in(codec, admin.email, PASSWORD)).access_token, ACCESS)
    caller = await authenticate_session(admin.id, UUID(token.sid))
    assert caller == CurrentUser(id=admin.id, email=admin.email, is_admin=True, session_id=token.sid)


async def test_authenticate_session_of_an_unknown_session_returns_none(user: User) -> None:
    assert await authenticate_session(user.id, uuid4()) is None


async def test_authenticate_session_with_another_users_id_returns_none(codec: TokenCodec, user: User) -> None:
    other = await register_user(unique_email(), PASSWORD)
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    assert await authenticate_session(other.id, UUID(caller.session_id)) is None


async def test_authenticate_session_of_an_inactive_user_returns_none(codec: TokenCodec, user: User) -> None:
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    await UserTable.update({UserTable.active: False}).where(UserTable.id == user.id)
    assert await authenticate_session(caller.id, UUID(caller.session_id)) is None


# --- profile changes ------------------------------------------------------------------------


async def test_change_profile_with_a_wrong_current_password_is_denied(codec: TokenCodec, user: User) -> None:
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    with pytest.raises(PermissionDeniedError):
        await change_profile(caller, UserUpdate(password=NEW_PASSWORD, current_password="not the password"))
    await log_in(codec, user.email, PASSWORD)
    with pytest.raises(AuthenticationError):
        await log_in(codec, user.email, NEW_PASSWORD)


async def test_change_profile_with_a_wrong_current_password_changes_no_email(codec: TokenCodec, user: User) -> None:
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    with pytest.raises(PermissionDeniedError):
        await change_profile(caller, UserUpdate(email=unique_email(), current_password="not the password"))
    assert (await get_user(user.id)).email == user.email


async def test_password_change_replaces_the_password(codec: TokenCodec, user: User) -> None:
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    await change_profile(caller, UserUpdate(password=NEW_PASSWORD, current_password=PASSWORD))
    await log_in(codec, user.email, NEW_PASSWORD)
    with pytest.raises(AuthenticationError):
        await log_in(codec, user.email, PASSWORD)


async def test_password_change_revokes_other_sessions_but_not_the_current_one(codec: TokenCodec, user: User) -> None:
    current = await log_in(codec, user.email, PASSWORD)
    other = await log_in(codec, user.email, PASSWORD)
    await change_profile(await session_of(codec, current), UserUpdate(password=NEW_PASSWORD, current_password=PASSWORD))
    assert await is_active(codec, current)
    assert not await is_active(codec, other)
    with pytest.raises(AuthenticationError):
        await refresh_session(codec, other.refresh_token)
    await refresh_session(codec, current.refresh_token)


async def test_email_change_alone_keeps_other_sessions(codec: TokenCodec, user: User) -> None:
    current = await log_in(codec, user.email, PASSWORD)
    other = await log_in(codec, user.email, PASSWORD)
    await change_profile(await session_of(codec, current), UserUpdate(email=unique_email()))
    assert await is_active(codec, other)


async def test_email_change_changes_the_login_name(codec: TokenCodec, user: User) -> None:
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    new_email = unique_email()
    changed = await change_profile(caller, UserUpdate(email=new_email))
    assert (changed.id, changed.email) == (user.id, new_email)
    await log_in(codec, new_email, PASSWORD)
    with pytest.raises(AuthenticationError):
        await log_in(codec, user.email, PASSWORD)


async def test_email_change_to_a_taken_email_raises_conflict(codec: TokenCodec, user: User) -> None:
    other = await register_user(unique_email(), PASSWORD)
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    with pytest.raises(ConflictError):
        await change_profile(caller, UserUpdate(email=other.email))
    assert (await get_user(user.id)).email == user.email


async def test_change_profile_without_changes_returns_the_user_unchanged(codec: TokenCodec, user: User) -> None:
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    assert await change_profile(caller, UserUpdate()) == user


# --- deletion -------------------------------------------------------------------------------


async def test_delete_user_removes_the_account_with_its_sessions_and_tokens(codec: TokenCodec, user: User) -> None:
    caller = await session_of(codec, await log_in(codec, user.email, PASSWORD))
    await delete_user(caller)
    with pytest.raises(AuthenticationError):
        await get_user(user.id)
    assert await authenticate_session(caller.id, UUID(caller.session_id)) is None
    assert await SessionTable.count() == 0
    assert await RefreshTokenTable.count() == 0


async def test_delete_user_leaves_other_accounts_alone(codec: TokenCodec, user: User) -> None:
    other = await register_user(unique_email(), PASSWORD)
    await delete_user(await session_of(codec, await log_in(codec, user.email, PASSWORD)))
    assert await get_user(other.id) == other
