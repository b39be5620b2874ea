"""The admin panel as its users and attackers meet it: a live ``bookstore admin`` (and, where the
API is involved, a live ``bookstore serve``) on the test PostgreSQL, driven over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bookstore.cli import ADMIN_FACTORY
from bookstore.testing import clean_environment, fetch_rows, free_port
from bookstore.testing.processes import cmdline, process_tree, start_time
from tests.helpers import (
    PASSWORD,
    TEST_SERVER_ENV,
    assert_problem,
    bearer,
    book_payload,
    first_answer,
    unique_email,
)
from tests.servers import AdminProcess, BookstoreProcess, RedisProcess

LOGIN = "/admin/public/login/"
TABLES = "/admin/api/tables/"
CSRF_COOKIE = "csrftoken"
SESSION_COOKIE = "id"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookstoreProcess]:
    server = BookstoreProcess(tmp_path_factory.mktemp("admin-api"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminProcess]:
    server = AdminProcess(tmp_path_factory.mktemp("admin"))
    try:
        yield server
    finally:
        server.stop()


def register(
    api: BookstoreProcess, database_url: str, *, admin: bool = False, superuser: bool = False, active: bool = True
) -> str:
    """A new account (through the API) with these flags; its email."""
    email = unique_email()
    response = httpx.post(f"{api.base_url}/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    fetch_rows(
        database_url,
        "UPDATE app_user SET admin = $2, superuser = $3, active = $4 WHERE email = $1",
        email,
        admin,
        superuser,
        active,
    )
    return email


class AdminBrowser:
    """What the admin's single-page app does: a CSRF cookie from a first page, echoed in a header."""

    def __init__(self, server: AdminProcess) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=10.0)
        self.http.get(LOGIN).raise_for_status()
        self.csrf = {"X-CSRFToken": self.http.cookies[CSRF_COOKIE]}

    def log_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return self.http.post(LOGIN, json={"username": email, "password": password}, headers=self.csrf)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def patch(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.patch(path, json=body, headers=self.csrf)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser(admin_server: AdminProcess) -> Iterator[AdminBrowser]:
    session = AdminBrowser(admin_server)
    try:
        yield session
    finally:
        session.close()


def sessions_of(database_url: str, email: str) -> int:
    [row] = fetch_rows(
        database_url,
        "SELECT count(*) FROM sessions WHERE user_id = (SELECT id FROM app_user WHERE email = $1)",
        email,
    )
    return int(row[0])


def test_an_active_admin_logs_in_and_sees_the_tables(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    email = register(api, database_url, admin=True)
    response = browser.log_in(email)
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    tables = browser.get(TABLES)
    assert tables.status_code == 200
    assert set(tables.json()) == {"app_user", "book", "book_order", "order_item"}
    assert sessions_of(database_url, email) == 1


@pytest.mark.parametrize("flags", [{"admin": False}, {"admin": True, "active": False}], ids=["regular", "inactive"])
def test_only_active_admins_may_log_in(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str, flags: dict[str, bool]
) -> None:
    email = register(api, database_url, **flags)
    response = browser.log_in(email)
    assert response.status_code == 401, response.text
    assert SESSION_COOKIE not in browser.http.cookies
    assert sessions_of(database_url, email) == 0
    assert browser.get(TABLES).status_code == 401


@pytest.mark.parametrize(
    "revoke",
    ["UPDATE app_user SET active = false WHERE email = $1", "UPDATE app_user SET admin = false WHERE email = $1"],
)
def test_deactivation_or_demotion_ends_admin_access_at_the_next_request(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str, revoke: str
) -> None:
    email = register(api, database_url, admin=True, superuser=True)
    assert browser.log_in(email).status_code == 200
    assert browser.get(TABLES).status_code == 200
    fetch_rows(database_url, revoke, email)
    assert browser.get(TABLES).status_code == 401
    assert browser.get(f"{TABLES}book/").status_code == 401
    # The session itself is gone: giving the rights back does not revive it.
    assert sessions_of(database_url, email) == 0
    fetch_rows(database_url, "UPDATE app_user SET active = true, admin = true WHERE email = $1", email)
    assert browser.get(TABLES).status_code == 401


def test_a_password_changed_through_the_api_ends_the_admin_sessions(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    email = register(api, database_url, admin=True)
    assert browser.log_in(email).status_code == 200
    tokens = httpx.post(f"{api.base_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    changed = httpx.patch(
        f"{api.base_url}/api/v1/users/me",
        json={"password": "a brand new password", "current_password": PASSWORD},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    assert browser.get(TABLES).status_code == 401
    assert sessions_of(database_url, email) == 0
    # The API session that made the change goes on, as the API promises.
    assert httpx.get(f"{api.base_url}/api/v1/users/me", headers=bearer(tokens["access_token"])).status_code == 200


def test_taking_admin_rights_away_takes_superuser_too(api: BookstoreProcess, database_url: str) -> None:
    email = register(api, database_url, admin=True, superuser=True)
    fetch_rows(database_url, "UPDATE app_user SET admin = false WHERE email = $1", email)
    [row] = fetch_rows(database_url, "SELECT admin, superuser FROM app_user WHERE email = $1", email)
    assert (row["admin"], row["superuser"]) == (False, False)
    # Nor can a writer make a superuser who is not an administrator.
    fetch_rows(database_url, "UPDATE app_user SET superuser = true WHERE email = $1", email)
    [row] = fetch_rows(database_url, "SELECT superuser FROM app_user WHERE email = $1", email)
    assert row["superuser"] is False


def test_password_hashes_are_never_shown(api: BookstoreProcess, browser: AdminBrowser, database_url: str) -> None:
    email = register(api, database_url, admin=True, superuser=True)
    assert browser.log_in(email).status_code == 200
    listing = browser.get(f"{TABLES}app_user/")
    assert listing.status_code == 200
    rows = listing.json()["rows"]
    assert rows
    assert all(row["password"] is None for row in rows)
    one = browser.get(f"{TABLES}app_user/{rows[0]['id']}/")
    assert one.status_code == 200
    assert one.json()["password"] is None
    assert "argon2" not in listing.text + one.text


def test_a_password_set_in_the_admin_logs_in_to_the_api(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    boss = register(api, database_url, admin=True, superuser=True)
    clerk = register(api, database_url)
    [clerk_row] = fetch_rows(database_url, "SELECT id FROM app_user WHERE email = $1", clerk)
    assert browser.log_in(boss).status_code == 200
    new_password = "set by the back office 42"
    response = browser.patch(f"{TABLES}app_user/{clerk_row['id']}/", {"password": new_password})
    assert response.status_code == 200, response.text
    [row] = fetch_rows(database_url, "SELECT password FROM app_user WHERE email = $1", clerk)
    assert row["password"].startswith("$argon2id$")
    login = httpx.post(f"{api.base_url}/api/v1/auth/login", json={"email": clerk, "password": new_password})
    assert login.status_code == 200, login.text
    old = httpx.post(f"{api.base_url}/api/v1/auth/login", json={"email": clerk, "password": PASSWORD})
    assert old.status_code == 401


def test_a_password_set_in_the_admin_follows_the_apis_rules_and_ends_the_sessions(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    clerk = register(api, database_url)
    tokens = httpx.post(f"{api.base_url}/api/v1/auth/login", json={"email": clerk, "password": PASSWORD}).json()
    [row] = fetch_rows(database_url, "SELECT id FROM app_user WHERE email = $1", clerk)
    assert browser.log_in(register(api, database_url, admin=True, superuser=True)).status_code == 200
    path = f"{TABLES}app_user/{row['id']}/"
    for weak in ("short", "", "eight\x00chars"):
        assert browser.patch(path, {"password": weak}).status_code == 400
    assert browser.http.put(path, json={"password": "x"}, headers=browser.csrf).status_code == 405
    [stored] = fetch_rows(database_url, "SELECT password FROM app_user WHERE id = $1", row["id"])
    assert stored["password"].startswith("$argon2id$")
    me = httpx.get(f"{api.base_url}/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert browser.patch(path, {"password": "a new and long one"}).status_code == 200
    # The API's tokens of the account end with the password an administrator replaced.
    assert httpx.get(f"{api.base_url}/api/v1/users/me", headers=bearer(tokens["access_token"])).status_code == 401
    refreshed = httpx.post(f"{api.base_url}/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401


def test_accounts_added_or_edited_in_the_admin_have_one_normalised_email(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    assert browser.log_in(register(api, database_url, admin=True, superuser=True)).status_code == 200
    added = browser.http.post(
        f"{TABLES}app_user/",
        json={"username": " New.Clerk@Example.COM ", "password": PASSWORD, "email": "", "active": True},
        headers=browser.csrf,
    )
    assert added.status_code == 201, added.text
    [row] = fetch_rows(database_url, "SELECT id, username, email FROM app_user WHERE id = $1", added.json()["id"])
    assert (row["username"], row["email"]) == ("new.clerk@example.com", "new.clerk@example.com")
    login = httpx.post(
        f"{api.base_url}/api/v1/auth/login", json={"email": "New.Clerk@example.com", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    renamed = browser.patch(f"{TABLES}app_user/{row['id']}/", {"username": "Renamed@Example.com"})
    assert renamed.status_code == 200, renamed.text
    [after] = fetch_rows(database_url, "SELECT username, email FROM app_user WHERE id = $1", row["id"])
    assert (after["username"], after["email"]) == ("renamed@example.com", "renamed@example.com")
    invalid = browser.patch(f"{TABLES}app_user/{row['id']}/", {"email": "not an address"})
    assert invalid.status_code == 400


def test_only_superusers_manage_accounts(api: BookstoreProcess, browser: AdminBrowser, database_url: str) -> None:
    staff = register(api, database_url, admin=True, superuser=False)
    assert browser.log_in(staff).status_code == 200
    [row] = fetch_rows(database_url, "SELECT id FROM app_user WHERE email = $1", staff)
    response = browser.patch(f"{TABLES}app_user/{row['id']}/", {"superuser": True})
    assert response.status_code == 405
    [after] = fetch_rows(database_url, "SELECT superuser FROM app_user WHERE email = $1", staff)
    assert after["superuser"] is False


def _book_through_the_api(api: BookstoreProcess, database_url: str) -> tuple[int, str]:
    email = register(api, database_url)
    tokens = httpx.post(f"{api.base_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    created = httpx.post(f"{api.base_url}/api/v1/books", json=book_payload(), headers=bearer(tokens["access_token"]))
    assert created.status_code == 201, created.text
    return created.json()["id"], created.headers["etag"]


def test_an_admin_edit_changes_what_the_api_serves_and_its_etag(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    book_id, etag = _book_through_the_api(api, database_url)
    assert browser.log_in(register(api, database_url, admin=True)).status_code == 200
    response = browser.patch(f"{TABLES}book/{book_id}/", {"price": "12.34"})
    assert response.status_code == 200, response.text
    served = httpx.get(f"{api.base_url}/api/v1/books/{book_id}")
    assert served.json()["price"] == "12.34"
    assert served.headers["etag"] != etag
    # The API's own conditional writes see the admin's change.
    stale = httpx.get(f"{api.base_url}/api/v1/books/{book_id}", headers={"If-None-Match": etag})
    assert stale.status_code == 200


def test_a_form_loaded_before_another_write_cannot_undo_it(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    book_id, _ = _book_through_the_api(api, database_url)
    assert browser.log_in(register(api, database_url, admin=True)).status_code == 200
    form = browser.get(f"{TABLES}book/{book_id}/").json()
    fetch_rows(database_url, "UPDATE book SET stock = 7 WHERE id = $1", book_id)  # a restock meanwhile
    stale = browser.patch(f"{TABLES}book/{book_id}/", {**form, "price": "1.50"})
    assert stale.status_code == 422
    assert "changed since it was read" in stale.json()["db_error"]
    [row] = fetch_rows(database_url, "SELECT stock, price, version FROM book WHERE id = $1", book_id)
    assert (row["stock"], str(row["price"]), row["version"]) == (7, "12.50", 2)


def test_the_admin_cannot_rewrite_a_books_cover_or_timestamps(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    book_id, _ = _book_through_the_api(api, database_url)
    [before] = fetch_rows(database_url, "SELECT created_at, cover_key FROM book WHERE id = $1", book_id)
    assert browser.log_in(register(api, database_url, admin=True)).status_code == 200
    forged = {"cover_key": "../../etc/passwd", "cover_size": 1, "created_at": "2000-01-01T00:00:00Z", "price": "3.00"}
    assert browser.patch(f"{TABLES}book/{book_id}/", forged).status_code == 200
    [after] = fetch_rows(
        database_url, "SELECT created_at, cover_key, cover_size, price FROM book WHERE id = $1", book_id
    )
    assert (after["created_at"], after["cover_key"], after["cover_size"]) == (before["created_at"], None, None)
    assert str(after["price"]) == "3.00"
    added = browser.http.post(
        f"{TABLES}book/",
        json={**book_payload(), "stock": 1, "version": 41, "cover_key": "x.png", "created_at": "2000-01-01T00:00:00Z"},
        headers=browser.csrf,
    )
    assert added.status_code == 201, added.text
    [row] = fetch_rows(
        database_url,
        "SELECT id, version, cover_key, created_at > now() - interval '1 hour' AS recent FROM book WHERE id <> $1",
        book_id,
    )
    assert (row["version"], row["cover_key"], row["recent"]) == (1, None, True)
    served = httpx.get(f"{api.base_url}/api/v1/books/{row['id']}")
    assert served.status_code == 200
    assert served.json()["cover_url"] is None


def test_the_admin_cannot_renumber_or_replace_a_book(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    book_id, _ = _book_through_the_api(api, database_url)
    assert browser.log_in(register(api, database_url, admin=True)).status_code == 200
    assert browser.patch(f"{TABLES}book/{book_id}/", {"id": book_id + 1000, "price": "2.00"}).status_code == 200
    assert httpx.get(f"{api.base_url}/api/v1/books/{book_id}").json()["price"] == "2.00"
    replaced = browser.http.put(f"{TABLES}book/{book_id}/", json=book_payload(), headers=browser.csrf)
    assert replaced.status_code == 405


def test_changes_need_the_csrf_token(api: BookstoreProcess, browser: AdminBrowser, database_url: str) -> None:
    book_id, _ = _book_through_the_api(api, database_url)
    assert browser.log_in(register(api, database_url, admin=True)).status_code == 200
    response = browser.http.patch(f"{TABLES}book/{book_id}/", json={"price": "1.00"})
    assert response.status_code == 403
    [row] = fetch_rows(database_url, "SELECT price FROM book WHERE id = $1", book_id)
    assert str(row["price"]) != "1.00"


def test_orders_are_read_only_in_the_admin(api: BookstoreProcess, browser: AdminBrowser, database_url: str) -> None:
    book_id, _ = _book_through_the_api(api, database_url)
    [order] = fetch_rows(database_url, "INSERT INTO book_order (status, total) VALUES ('placed', 9.99) RETURNING id")
    [item] = fetch_rows(
        database_url,
        "INSERT INTO order_item (order_id, book_id, title, quantity, unit_price) "
        "VALUES ($1, $2, 'A book', 1, 9.99) RETURNING id",
        order["id"],
        book_id,
    )
    assert browser.log_in(register(api, database_url, admin=True, superuser=True)).status_code == 200
    assert browser.get(f"{TABLES}book_order/{order['id']}/").status_code == 200
    new_order = {"status": "placed", "total": "0.00", "user_id": None, "cancelled_at": None}
    created = browser.http.post(f"{TABLES}book_order/", json=new_order, headers=browser.csrf)
    assert created.status_code == 405, created.text
    assert browser.patch(f"{TABLES}order_item/{item['id']}/", {"quantity": 100}).status_code == 405
    assert browser.http.delete(f"{TABLES}book_order/{order['id']}/", headers=browser.csrf).status_code == 405
    [count] = fetch_rows(database_url, "SELECT count(*) FROM book_order")
    [quantity] = fetch_rows(database_url, "SELECT quantity FROM order_item WHERE id = $1", item["id"])
    assert (count[0], quantity[0]) == (1, 1)


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b"[1, 2]", 400),
        ("application/json", b'"just a string"', 400),
        ("application/json", b'{"username": 7, "password": "x"}', 400),
        ("application/json", b'{"username": "a@example.com", "password": ["x"]}', 400),
        ("application/json", b"\xff\xfe{}", 400),
        ("text/plain", b"username=a&password=b", 415),
        ("application/json", b"{" + b" " * 20_000 + b"}", 413),
        ("application/json", b'\xef\xbb\xbf{"username": "a@example.com", "password": "x"}', 400),
        ("application/json", '{"username": "a@example.com", "password": "x"}'.encode("utf-16"), 400),
        ("application/x-www-form-urlencoded", '{"username": "a@example.com"}'.encode("utf-16-le"), 400),
        ("application/json", b'{"username": "\\ud800@example.com", "password": "x"}', 400),
        ("application/json", b'{"username": "a@example.com", "password": "\\ud800"}', 400),
        ("application/json", b'{"username": "a\\u0000b@example.com", "password": "x"}', 400),
        ("application/x-www-form-urlencoded", b"username=a%00b%40example.com&password=x", 400),
    ],
    ids=[
        "list",
        "string",
        "number-username",
        "list-password",
        "not-utf8",
        "not-json-nor-form",
        "too-large",
        "json-after-a-bom",
        "utf16-json",
        "utf16-form",
        "unpaired-surrogate-username",
        "unpaired-surrogate-password",
        "nul-json",
        "nul-form",
    ],
)
def test_login_bodies_piccolo_cannot_read_get_a_4xx(
    browser: AdminBrowser, content_type: str, body: bytes, status: int
) -> None:
    response = browser.http.post(LOGIN, content=body, headers={**browser.csrf, "content-type": content_type})
    assert_problem(response, status)
    # Answered before Piccolo, and still with the admin's security headers.
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert SESSION_COOKIE not in browser.http.cookies


def test_a_form_login_with_the_csrf_token_in_the_form_works(
    api: BookstoreProcess, browser: AdminBrowser, database_url: str
) -> None:
    # Piccolo's own HTML login page posts a form carrying the CSRF token; it survives re-encoding.
    email = register(api, database_url, admin=True)
    form = {"username": email, "password": PASSWORD, CSRF_COOKIE: browser.csrf["X-CSRFToken"]}
    response = browser.http.post(LOGIN, data=form)
    assert response.status_code == 200, response.text
    assert browser.get(TABLES).status_code == 200


def test_the_admin_redirects_to_itself_and_sends_security_headers(admin_server: AdminProcess) -> None:
    for path in ("/", "/admin"):
        response = httpx.get(admin_server.base_url + path)
        assert response.status_code in {307, 308}
        assert response.headers["location"].endswith("/admin/")
    page = httpx.get(f"{admin_server.base_url}/admin/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    # Same-origin referrers keep the Origin header the CSRF check reads ("no-referrer" sends null).
    assert page.headers["referrer-policy"] == "same-origin"


def test_admin_and_api_logins_share_the_limits_in_redis(
    tmp_path: Path, redis_server: RedisProcess, database_url: str
) -> None:
    redis_server.flush()
    limits = {
        "REDIS_URL": redis_server.url,
        "BOOKSTORE_LOGIN_RATE_LIMIT_PER_EMAIL": "3",
        "BOOKSTORE_LOGIN_RATE_LIMIT_PER_IP": "6",
        "BOOKSTORE_AUTH_RATE_LIMIT_WINDOW_SECONDS": "600",
    }
    api = BookstoreProcess(tmp_path / "api", env=limits)
    admin_server = AdminProcess(tmp_path / "admin", env=limits)
    browser = AdminBrowser(admin_server)
    try:
        email = register(api, database_url, admin=True)
        wrong = {"email": email, "password": "not the password"}
        for _ in range(2):
            assert httpx.post(f"{api.base_url}/api/v1/auth/login", json=wrong).status_code == 401
        # The third guess at this account comes through the admin: still counted, still refused.
        assert browser.log_in(email, "not the password").status_code == 401
        limited = browser.log_in(email)
        body = assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) > 0
        assert "Too many" in body["detail"]
        assert httpx.post(f"{api.base_url}/api/v1/auth/login", json={**wrong, "password": PASSWORD}).status_code == 429
        # Per client IP as well: other accounts from the same address run out at six attempts.
        statuses = [browser.log_in(unique_email()).status_code for _ in range(3)]
        assert statuses == [401, 429, 429]
    finally:
        browser.close()
        admin_server.stop()
        api.stop()


@pytest.mark.parametrize("command", [("admin", "--port", "1"), ("serve", "--port", "1", "--admin-port", "2")])
def test_the_admin_refuses_to_start_in_production_without_its_hosts(
    tmp_path: Path, database_url: str, command: tuple[str, ...]
) -> None:
    env = {
        **clean_environment(keep=("DATABASE_URL",)),
        **TEST_SERVER_ENV,
        "BOOKSTORE_ENV": "production",
        "BOOKSTORE_SECRET_KEY": "s" * 40,
    }
    result = subprocess.run(
        [sys.executable, "-m", "bookstore", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "BOOKSTORE_ADMIN_ALLOWED_HOSTS must be set in production" in result.stderr


def test_behind_a_trusted_proxy_the_admin_sees_https_and_checks_the_origin(
    tmp_path: Path, api: BookstoreProcess, database_url: str
) -> None:
    book_id, _ = _book_through_the_api(api, database_url)
    proxied = AdminProcess(
        tmp_path,
        env={"BOOKSTORE_TRUSTED_PROXIES": "127.0.0.1", "BOOKSTORE_ADMIN_ALLOWED_HOSTS": "admin.example.com"},
    )
    browser = AdminBrowser(proxied)
    via_tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    try:
        redirect = browser.http.get("/admin", headers=via_tls)
        assert redirect.headers["location"].startswith("https://")
        login = browser.http.post(
            LOGIN,
            json={"username": register(api, database_url, admin=True), "password": PASSWORD},
            headers={**browser.csrf, **via_tls, "Origin": "https://admin.example.com"},
        )
        assert login.status_code == 200, login.text
        path = f"{TABLES}book/{book_id}/"
        forged = browser.http.patch(
            path, json={"price": "0.01"}, headers={**browser.csrf, **via_tls, "Origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        [row] = fetch_rows(database_url, "SELECT price FROM book WHERE id = $1", book_id)
        assert str(row["price"]) != "0.01"
        genuine = browser.http.patch(
            path, json={"price": "0.02"}, headers={**browser.csrf, **via_tls, "Origin": "https://admin.example.com"}
        )
        assert genuine.status_code == 200, genuine.text
    finally:
        browser.close()
        proxied.stop()


def test_a_login_body_read_two_ways_counts_against_the_account_piccolo_tries(
    tmp_path: Path, api: BookstoreProcess, redis_server: RedisProcess, database_url: str
) -> None:
    redis_server.flush()
    target = register(api, database_url, admin=True)
    limited = AdminProcess(tmp_path, env={"REDIS_URL": redis_server.url, "BOOKSTORE_LOGIN_RATE_LIMIT_PER_EMAIL": "2"})
    browser = AdminBrowser(limited)
    try:
        statuses = []
        for attempt in range(3):
            # JSON naming a decoy, and as a form (the content type it claims) the target account.
            decoy = f"decoy{attempt}@example.com"
            smuggled = f"&{CSRF_COOKIE}={browser.csrf['X-CSRFToken']}&username={target}&password=wrong-guess&y="
            body = '{"username": "' + decoy + '", "password": "x", "z": "' + smuggled + '"}'
            response = browser.http.post(
                LOGIN, content=body.encode(), headers={"content-type": "application/x-www-form-urlencoded"}
            )
            statuses.append(response.status_code)
        assert statuses == [401, 401, 429]
    finally:
        browser.close()
        limited.stop()


def test_a_stalled_login_body_gets_408(tmp_path: Path) -> None:
    impatient = AdminProcess(tmp_path, env={"BOOKSTORE_BODY_READ_TIMEOUT_SECONDS": "1"})
    try:
        with socket.create_connection(("127.0.0.1", impatient.port), timeout=10) as connection:
            connection.sendall(
                b"POST /admin/public/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"username": "'
            )
            answer = connection.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer
    finally:
        impatient.stop()


def test_the_admin_panel_does_not_outlive_serve_even_when_serve_is_killed(tmp_path: Path, database_url: str) -> None:
    admin_port = free_port()
    server = BookstoreProcess(tmp_path, admin_port=admin_port)
    descendants: dict[int, int | None] = {}
    try:
        assert first_answer(f"http://127.0.0.1:{admin_port}/admin/").status_code == 200
        descendants = {pid: start_time(pid) for pid in process_tree(server.pid)}
        # Granian names its processes after the application it serves: the admin's and its worker.
        admin = {pid: started for pid, started in descendants.items() if ADMIN_FACTORY in " ".join(cmdline(pid))}
        assert len(admin) == 2
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while any(start_time(pid) == started for pid, started in admin.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [pid for pid, started in admin.items() if start_time(pid) == started]
        assert survivors == [], "the admin panel lived on after `bookstore serve` was killed"
    finally:
        server.stop()
        # The API's Granian runs in a session of its own, which stop() cannot find once serve is gone.
        for pid, started in descendants.items():
            if start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_in_production_every_admin_cookie_is_secure(tmp_path: Path, api: BookstoreProcess, database_url: str) -> None:
    production = AdminProcess(
        tmp_path, env={"BOOKSTORE_ENV": "production", "BOOKSTORE_ADMIN_ALLOWED_HOSTS": "127.0.0.1"}
    )
    browser = AdminBrowser(production)
    try:
        csrf_cookie = browser.http.get("/admin/", headers={"Cookie": ""}).headers["set-cookie"]
        assert csrf_cookie.startswith(f"{CSRF_COOKIE}=")
        # httpx, like a browser, keeps Secure cookies off plain HTTP: send the CSRF cookie by hand.
        token = browser.csrf["X-CSRFToken"]
        login = httpx.post(
            production.base_url + LOGIN,
            json={"username": register(api, database_url, admin=True), "password": PASSWORD},
            headers={**browser.csrf, "Cookie": f"{CSRF_COOKIE}={token}"},
        )
        assert login.status_code == 200, login.text
        session_cookie = login.headers["set-cookie"]
        for cookie in (csrf_cookie, session_cookie):
            attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
            assert attributes.count("secure") == 1, cookie
    finally:
        browser.close()
        production.stop()
