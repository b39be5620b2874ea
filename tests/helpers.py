"""Test helpers: an API client with the common flows, and factories for valid data."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bookstore.books.isbn import isbn13_check_digit

PASSWORD = "correct horse battery"
_isbn_numbers = itertools.count(1)
_email_numbers = itertools.count(1)


def unique_isbn() -> str:
    """A valid ISBN-13 not used before in this test session."""
    stem = f"978{next(_isbn_numbers):09d}"
    return stem + isbn13_check_digit(stem)


def unique_email() -> str:
    return f"reader{next(_email_numbers)}@example.com"


def book_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": "The Dispossessed",
        "author": "Ursula K. Le Guin",
        "publish_date": "1974-05-01",
        "isbn": unique_isbn(),
        "price": "12.50",
    }
    payload.update(overrides)
    return payload


def order_payload(*lines: tuple[int, int]) -> dict[str, Any]:
    """The body of ``POST /api/v1/orders`` for (book id, quantity) lines."""
    return {"items": [{"book_id": book_id, "quantity": quantity} for book_id, quantity in lines]}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def first_answer(url: str, timeout: float = 60.0) -> httpx.Response:
    """The first answer of ``url`` (a server still starting), polled every 0.2 s for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5.0)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem response with ``status``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


@dataclass
class Account:
    id: int
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


class ApiClient:
    """httpx client bound to the app, with the flows most tests need."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    async def register(self, email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.http.post(
            "/api/v1/auth/register", json={"email": email or unique_email(), "password": password}
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.http.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def account(self, email: str | None = None, password: str = PASSWORD) -> Account:
        user = await self.register(email, password)
        tokens = await self.login(user["email"], password)
        return Account(user["id"], user["email"], password, tokens["access_token"], tokens["refresh_token"])

    async def create_book(self, account: Account, **overrides: Any) -> dict[str, Any]:
        response = await self.http.post("/api/v1/books", json=book_payload(**overrides), headers=account.headers)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


# Environment for servers started by tests: real argon2id at a low cost, and rate limits far
# above what the tests send (tests of the limits set their own).
TEST_SERVER_ENV = {
    "BOOKSTORE_ARGON2_TIME_COST": "1",
    "BOOKSTORE_ARGON2_MEMORY_COST_KIB": "8192",
    "BOOKSTORE_ARGON2_PARALLELISM": "1",
    "BOOKSTORE_RATE_LIMIT_REQUESTS": "1000000",
    "BOOKSTORE_LOGIN_RATE_LIMIT_PER_IP": "1000000",
    "BOOKSTORE_LOGIN_RATE_LIMIT_PER_EMAIL": "1000000",
    "BOOKSTORE_REGISTER_RATE_LIMIT_PER_IP": "1000000",
}
