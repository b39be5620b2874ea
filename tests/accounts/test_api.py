"""Accounts API: registration, login (JSON and OAuth2 form), refresh rotation, logout, /users/me."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from bookstore.accounts.tables import RefreshTokenTable, UserTable
from bookstore.core.tokens import ACCESS, ALGORITHM, AUDIENCE, ISSUER, BookstoreToken
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD, Account, ApiClient, assert_problem, bearer, unique_email

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/users/me"


# --- registration ---------------------------------------------------------------------------


async def test_register_returns_the_user_without_password(client: ApiClient) -> None:
    response = await client.post(REGISTER, json={"email": "  Ada@Example.COM ", "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "email", "is_admin", "created_at"}
    assert body["email"] == "ada@example.com"
    assert body["is_admin"] is False


async def test_register_stores_an_argon2id_hash(client: ApiClient) -> None:
    user = await client.register()
    row = await UserTable.select(UserTable.password).where(UserTable.id == user["id"]).first()
    assert row is not None
    assert row["password"].startswith("$argon2id$")
    assert PASSWORD not in row["password"]


async def test_register_same_email_in_other_case_conflicts(client: ApiClient) -> None:
    await client.register("alice@x.com")
    response = await client.post(REGISTER, json={"email": "Alice@X.com", "password": PASSWORD})
    assert_problem(response, 409)


async def test_register_nfkc_equivalent_email_conflicts(client: ApiClient) -> None:
    await client.register("admin@x.com")
    fullwidth_admin = "".join(chr(ord(letter) - ord("A") + 0xFF21) for letter in "ADMIN")
    # Fullwidth letters normalise (NFKC) to the same address.
    response = await client.post(REGISTER, json={"email": f"{fullwidth_admin}@x.com", "password": PASSWORD})
    assert_problem(response, 409)


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        ("not-an-email", PASSWORD, "email"),
        ("a@b", PASSWORD, "email"),
        ("", PASSWORD, "email"),
        ("nul\u0000@example.com", PASSWORD, "email"),
        ("x" * 300 + "@example.com", PASSWORD, "email"),
        (None, PASSWORD, "email"),
        ("ok@example.com", "short", "password"),
        ("ok@example.com", "x" * 129, "password"),
        ("ok@example.com", "pass\u0000word123", "password"),
        ("ok@example.com", 12345678, "password"),
    ],
)
async def test_register_rejects_invalid_email_or_password(
    client: ApiClient, email: object, password: object, field: str
) -> None:
    response = await client.post(REGISTER, json={"email": email, "password": password})
    body = assert_problem(response, 400)
    assert [error["key"] for error in body["errors"]] == [field]
    assert await UserTable.count() == 0


async def test_register_rejects_unknown_fields(client: ApiClient) -> None:
    response = await client.post(REGISTER, json={"email": unique_email(), "password": PASSWORD, "is_admin": True})
    assert_problem(response, 400)
    assert await UserTable.count() == 0


async def test_password_of_exactly_eight_and_128_characters_is_accepted(client: ApiClient) -> None:
    await client.register(password="x" * 8)
    await client.register(password="y" * 128)


# --- login ----------------------------------------------------------------------------------


async def test_login_returns_a_bearer_token_pair(client: ApiClient, settings: object) -> None:
    user = await client.register()
    response = await client.post(LOGIN, json={"email": user["email"].upper(), "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert body["access_token"] != body["refresh_token"]
    assert response.headers["cache-control"] == "no-store"


async def test_token_route_accepts_the_oauth2_password_form(client: ApiClient) -> None:
    user = await client.register()
    response = await client.post(
        TOKEN, data={"grant_type": "password", "username": user["email"], "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["token_type"] == "bearer"
    me = await client.get(ME, headers=bearer(response.json()["access_token"]))
    assert me.json()["email"] == user["email"]


async def test_login_refuses_the_form_and_names_the_token_route(client: ApiClient) -> None:
    user = await client.register()
    response = await client.post(LOGIN, data={"username": user["email"], "password": PASSWORD})
    assert TOKEN in assert_problem(response, 415)["detail"]


async def test_token_route_refuses_json_and_names_the_login_route(client: ApiClient) -> None:
    user = await client.register()
    response = await client.post(TOKEN, json={"username": user["email"], "password": PASSWORD})
    assert LOGIN in assert_problem(response, 415)["detail"]


async def test_token_route_refuses_bytes_that_are_not_utf8(client: ApiClient) -> None:
    # Decoded with replacement characters, different invalid byte strings would all reach the
    # password check as the same password ("\ufffd" each).
    password = "\ufffd" * 8
    registered = await client.post("/api/v1/auth/register", json={"email": unique_email(), "password": password})
    assert registered.status_code == 201
    email = registered.json()["email"]
    body = f"username={email}&password=%ff%fe%80%81%c0%c1%f5%ff"
    response = await client.post(TOKEN, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert assert_problem(response, 400)["detail"]
    assert response.headers["cache-control"] == "no-store"


async def test_token_route_refuses_a_form_in_another_charset(client: ApiClient) -> None:
    user = await client.register()
    response = await client.post(
        TOKEN,
        content=f"username={user['email']}&password={PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=iso-8859-1"},
    )
    assert "UTF-8" in assert_problem(response, 415)["detail"]
    utf8 = await client.post(
        TOKEN,
        content=f"username={user['email']}&password={PASSWORD}",
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    )
    assert utf8.status_code == 200


async def test_token_route_refuses_a_wrong_password_like_login(client: ApiClient) -> None:
    user = await client.register()
    by_form = await client.post(TOKEN, data={"username": user["email"], "password": "not the password"})
    by_json = await client.post(LOGIN, json={"email": user["email"], "password": "not the password"})
    assert {**assert_problem(by_form, 401), "request_id": ""} == {**assert_problem(by_json, 401), "request_id": ""}


async def test_unknown_email_and_wrong_password_look_identical(client: ApiClient) -> None:
    user = await client.register()
    wrong_password = await client.post(LOGIN, json={"email": user["email"], "password": "not the password"})
    unknown_email = await client.post(LOGIN, json={"email": "nobody@example.com", "password": PASSWORD})
    assert_problem(wrong_password, 401)
    assert_problem(unknown_email, 401)
    # Identical but for each request's own id.
    assert wrong_password.json().pop("request_id") != unknown_email.json().pop("request_id")
    assert {**wrong_password.json(), "request_id": ""} == {**unknown_email.json(), "request_id": ""}
    assert wrong_password.headers["www-authenticate"] == unknown_email.headers["www-authenticate"]


async def test_login_of_a_deactivated_user_is_refused(client: ApiClient) -> None:
    user = await client.register()
    await UserTable.update({UserTable.active: False}).where(UserTable.id == user["id"])
    assert_problem(await client.post(LOGIN, json={"email": user["email"], "password": PASSWORD}), 401)


@pytest.mark.parametrize(
    ("path", "content", "content_type", "status"),
    [
        (LOGIN, b'{"email": "a@b.co", "password": ', "application/json", 400),
        (LOGIN, b'{"email": "a@b.co"}', "application/json", 400),
        (LOGIN, b'{"email": "a@b.co", "password": "x", "extra": 1}', "application/json", 400),
        (LOGIN, b"email=a@b.co&password=x", "text/plain", 415),
        (LOGIN, b"", "application/json", 400),
        (TOKEN, b"username=a%40b.co", "application/x-www-form-urlencoded", 400),
        (
            TOKEN,
            b"username=a%40b.co&password=x&grant_type=client_credentials",
            "application/x-www-form-urlencoded",
            400,
        ),
        (TOKEN, b"username=a%40b.co&username=c%40d.co&password=x", "application/x-www-form-urlencoded", 400),
        (TOKEN, b"", "application/x-www-form-urlencoded", 400),
        (TOKEN, b"username=a@b.co&password=x", "text/plain", 415),
    ],
)
async def test_login_rejects_malformed_bodies(
    client: ApiClient, path: str, content: bytes, content_type: str, status: int
) -> None:
    response = await client.post(path, content=content, headers={"content-type": content_type})
    assert_problem(response, status)


# --- refresh rotation -----------------------------------------------------------------------


async def test_refresh_returns_a_new_pair_that_works(client: ApiClient) -> None:
    account = await client.account()
    response = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert response.status_code == 200
    pair = response.json()
    assert pair["refresh_token"] != account.refresh_token
    assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200


async def test_refresh_tokens_are_stored_hashed(client: ApiClient) -> None:
    account = await client.account()
    stored = await RefreshTokenTable.select(RefreshTokenTable.token_hash).output(as_list=True)
    assert len(stored) == 1
    assert stored[0] != account.refresh_token
    assert len(stored[0]) == 64


async def test_reusing_a_refresh_token_revokes_the_whole_session(client: ApiClient) -> None:
    account = await client.account()
    rotated = (await client.post(REFRESH, json={"refresh_token": account.refresh_token})).json()

    replay = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert_problem(replay, 401)
    # The family is dead: the rotated refresh token and the session's access tokens fail too.
    assert_problem(await client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]}), 401)
    assert_problem(await client.get(ME, headers=bearer(rotated["access_token"])), 401)
    assert_problem(await client.get(ME, headers=account.headers), 401)


async def test_concurrent_refreshes_with_one_token_yield_exactly_one_pair(client: ApiClient) -> None:
    # The claim is one conditional UPDATE: the losers wait on the row lock until the winner
    # commits, then no longer match (used_at is set), so one wins and the others get 401.
    account = await client.account()
    responses = await asyncio.gather(
        *(client.post(REFRESH, json={"refresh_token": account.refresh_token}) for _ in range(5))
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 401, 401, 401, 401], statuses
    for response in responses:
        if response.status_code != 200:
            assert_problem(response, 401)


async def test_expired_refresh_tokens_are_pruned_at_login(client: ApiClient) -> None:
    account = await client.account()
    expired = datetime.now(UTC) - timedelta(seconds=1)
    await RefreshTokenTable.update({RefreshTokenTable.expires_at: expired}, force=True)
    assert_problem(await client.post(REFRESH, json={"refresh_token": account.refresh_token}), 401)
    await client.login(account.email)
    assert await RefreshTokenTable.count() == 1


async def test_refresh_rejects_an_access_token(client: ApiClient) -> None:
    account = await client.account()
    assert_problem(await client.post(REFRESH, json={"refresh_token": account.access_token}), 401)


async def test_refresh_rejects_garbage(client: ApiClient) -> None:
    assert_problem(await client.post(REFRESH, json={"refresh_token": "not.a.jwt"}), 401)


async def test_refresh_survives_another_app_instance(client: ApiClient, settings: object) -> None:
    """Refresh tokens live in PostgreSQL, so a restarted (new) app instance accepts them."""
    from bookstore.app import create_app
    from tests.conftest import make_settings

    account = await client.account()
    import httpx

    other_app = create_app(make_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other_app), base_url="http://other") as other:
        response = await other.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert response.status_code == 200


# --- logout ---------------------------------------------------------------------------------


async def test_logout_revokes_the_session(client: ApiClient) -> None:
    account = await client.account()
    response = await client.post(LOGOUT, headers=account.headers)
    assert response.status_code == 204
    assert_problem(await client.post(REFRESH, json={"refresh_token": account.refresh_token}), 401)
    assert_problem(await client.get(ME, headers=account.headers), 401)


async def test_logout_leaves_other_sessions_alone(client: ApiClient) -> None:
    account = await client.account()
    other_session = await client.login(account.email)
    await client.post(LOGOUT, headers=account.headers)
    assert (await client.get(ME, headers=bearer(other_session["access_token"]))).status_code == 200


async def test_logout_without_token_is_unauthorized(client: ApiClient) -> None:
    assert_problem(await client.post(LOGOUT), 401)


# --- /users/me ------------------------------------------------------------------------------


async def test_get_me_returns_the_caller(client: ApiClient) -> None:
    account = await client.account()
    response = await client.get(ME, headers=account.headers)
    assert response.status_code == 200
    assert response.json()["id"] == account.id
    assert response.json()["email"] == account.email


async def test_patch_me_changes_the_email(client: ApiClient) -> None:
    account = await client.account()
    response = await client.patch(ME, json={"email": "New.Address@Example.com"}, headers=account.headers)
    assert response.status_code == 200
    assert response.json()["email"] == "new.address@example.com"
    await client.login("new.address@example.com")


async def test_patch_me_to_a_taken_email_conflicts(client: ApiClient) -> None:
    first = await client.account()
    second = await client.account()
    response = await client.patch(ME, json={"email": first.email.upper()}, headers=second.headers)
    assert_problem(response, 409)


@pytest.mark.parametrize("body", [{}, {"current_password": PASSWORD}])
async def test_profile_change_that_changes_nothing_is_rejected(client: ApiClient, body: dict[str, str]) -> None:
    account = await client.account()
    problem = assert_problem(await client.patch(ME, json=body, headers=account.headers), 400)
    assert problem["errors"][0]["source"] == "body"
    assert (await client.get(ME, headers=account.headers)).json()["email"] == account.email


async def test_password_change_needs_the_current_password(client: ApiClient) -> None:
    account = await client.account()
    missing = await client.patch(ME, json={"password": "a brand new password"}, headers=account.headers)
    assert_problem(missing, 400)
    wrong = await client.patch(
        ME, json={"password": "a brand new password", "current_password": "wrong"}, headers=account.headers
    )
    assert_problem(wrong, 403)
    await client.login(account.email, PASSWORD)


async def test_password_change_revokes_other_sessions_only(client: ApiClient) -> None:
    account = await client.account()
    other = await client.login(account.email)
    response = await client.patch(
        ME, json={"password": "a brand new password", "current_password": PASSWORD}, headers=account.headers
    )
    assert response.status_code == 200
    assert (await client.get(ME, headers=account.headers)).status_code == 200
    assert_problem(await client.get(ME, headers=bearer(other["access_token"])), 401)
    assert_problem(await client.post(REFRESH, json={"refresh_token": other["refresh_token"]}), 401)
    await client.login(account.email, "a brand new password")
    assert_problem(await client.post(LOGIN, json={"email": account.email, "password": PASSWORD}), 401)


async def test_delete_me_removes_the_account_and_its_tokens(client: ApiClient) -> None:
    account = await client.account()
    response = await client.delete(ME, headers=account.headers)
    assert response.status_code == 204
    assert_problem(await client.get(ME, headers=account.headers), 401)
    assert_problem(await client.post(REFRESH, json={"refresh_token": account.refresh_token}), 401)
    assert await UserTable.count().where(UserTable.id == account.id) == 0


async def test_deactivated_user_access_token_stops_working_at_once(client: ApiClient) -> None:
    account = await client.account()
    await UserTable.update({UserTable.active: False}).where(UserTable.id == account.id)
    assert_problem(await client.get(ME, headers=account.headers), 401)


@pytest.mark.parametrize("sub", ["9" * 40, "2147483648", "01", "+1"])
async def test_validly_signed_token_naming_no_possible_user_is_unauthorized(client: ApiClient, sub: str) -> None:
    # Used to reach PostgreSQL, which refused the out-of-range id: a 400 instead of a 401.
    now = datetime.now(UTC)
    token = BookstoreToken(
        sub=sub, exp=now + timedelta(minutes=5), jti="j", iss=ISSUER, aud=AUDIENCE, typ=ACCESS, sid=str(uuid4())
    ).encode(TEST_SECRET, ALGORITHM)
    assert_problem(await client.get(ME, headers=bearer(token)), 401)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_me_requires_a_token(client: ApiClient, method: str) -> None:
    assert_problem(await client.request(method, ME, json={} if method == "PATCH" else None), 401)


async def test_admin_flag_comes_only_from_createsuperuser(client: ApiClient, admin: Account) -> None:
    me = await client.get(ME, headers=admin.headers)
    assert me.json()["is_admin"] is True
    account = await client.account()
    response = await client.patch(ME, json={"is_admin": True}, headers=account.headers)
    assert_problem(response, 400)
    assert (await client.get(ME, headers=account.headers)).json()["is_admin"] is False


async def test_profile_change_of_an_account_deleted_meanwhile_is_unauthorized(client: ApiClient) -> None:
    from bookstore.accounts import service
    from bookstore.accounts.schemas import CurrentUser, UserUpdate
    from bookstore.core.errors import AuthenticationError

    account = await client.account()
    caller = CurrentUser(id=account.id, email=account.email, is_admin=False, session_id="unused")
    await service.delete_user(caller)
    with pytest.raises(AuthenticationError):
        await service.change_profile(caller, UserUpdate(email="new@example.com"))


@pytest.mark.parametrize(
    ("content", "body"),
    [
        ("json", {"email": "reader@example.com\u0000", "password": PASSWORD}),
        ("form", {"username": "reader@example.com\u0000", "password": PASSWORD}),
    ],
)
async def test_a_nul_in_the_login_name_is_refused_naming_the_field(
    client: ApiClient, content: str, body: dict[str, str]
) -> None:
    if content == "json":
        response = await client.post(LOGIN, json=body)
    else:
        response = await client.post(TOKEN, data=body)
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["key"] in {"email", "username"}
