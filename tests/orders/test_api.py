"""The orders API over HTTP: the contract of each route, who may call it (anonymous, another user,
the owner, an admin), idempotent retries, and bad input answered with a problem+json 4xx."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from bookstore.core.database import fetch_one
from bookstore.settings import Settings
from tests.helpers import Account, ApiClient, assert_problem, order_payload

ORDERS = "/api/v1/orders"


async def place(client: ApiClient, account: Account, *lines: tuple[int, int], **headers: str) -> httpx.Response:
    return await client.post(ORDERS, json=order_payload(*lines), headers={**account.headers, **headers})


async def stock_of(client: ApiClient, book_id: int) -> int:
    response = await client.get(f"/api/v1/books/{book_id}")
    assert response.status_code == 200, response.text
    stock: int = response.json()["stock"]
    return stock


async def orders_stored() -> int:
    row = await fetch_one("SELECT count(*) FROM book_order")
    assert row is not None
    counted: int = row[0]
    return counted


@dataclass
class Shop:
    owner: Account
    other: Account
    admin: Account
    book: dict[str, Any]


@pytest.fixture
async def shop(client: ApiClient, admin: Account) -> Shop:
    owner, other = await client.account(), await client.account()
    book = await client.create_book(other, stock=50, price="7.25", title="Kindred")
    return Shop(owner, other, admin, book)


# --- the contract of each route ------------------------------------------------------------------


async def test_place_answers_201_with_the_order_and_its_location(client: ApiClient, shop: Shop) -> None:
    response = await place(client, shop.owner, (shop.book["id"], 3))
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    order = response.json()
    assert response.headers["location"] == f"{ORDERS}/{order['id']}"
    assert "idempotent-replayed" not in response.headers
    assert order["status"] == "placed"
    assert order["cancelled_at"] is None
    assert order["items"] == [
        {"book_id": shop.book["id"], "title": "Kindred", "quantity": 3, "unit_price": "7.25", "line_total": "21.75"}
    ]
    assert order["total"] == "21.75"
    assert await stock_of(client, shop.book["id"]) == 47

    fetched = await client.get(response.headers["location"], headers=shop.owner.headers)
    assert fetched.status_code == 200
    assert fetched.json() == order


async def test_placing_changes_the_books_etag(client: ApiClient, shop: Shop) -> None:
    before = (await client.get(f"/api/v1/books/{shop.book['id']}")).headers["etag"]
    assert (await place(client, shop.owner, (shop.book["id"], 1))).status_code == 201
    after = (await client.get(f"/api/v1/books/{shop.book['id']}")).headers["etag"]
    assert before != after


async def test_client_prices_are_refused_not_trusted(client: ApiClient, shop: Shop) -> None:
    body = {"items": [{"book_id": shop.book["id"], "quantity": 1, "unit_price": "0.01"}]}
    assert_problem(await client.post(ORDERS, json=body, headers=shop.owner.headers), 400)
    body = {**order_payload((shop.book["id"], 1)), "total": "0.01"}
    assert_problem(await client.post(ORDERS, json=body, headers=shop.owner.headers), 400)
    assert await orders_stored() == 0


async def test_unknown_book_is_404_naming_it(client: ApiClient, shop: Shop) -> None:
    problem = assert_problem(await place(client, shop.owner, (shop.book["id"], 1), (987654, 1)), 404)
    assert problem["unknown_book_ids"] == [987654]
    assert "987654" in problem["detail"]
    assert await stock_of(client, shop.book["id"]) == 50


async def test_short_stock_is_409_naming_the_book_and_what_is_available(client: ApiClient, shop: Shop) -> None:
    scarce = await client.create_book(shop.other, stock=1)
    problem = assert_problem(await place(client, shop.owner, (shop.book["id"], 2), (scarce["id"], 3)), 409)
    assert problem["unavailable"] == [{"book_id": scarce["id"], "requested": 3, "available": 1}]
    assert (await stock_of(client, shop.book["id"]), await stock_of(client, scarce["id"])) == (50, 1)
    assert await orders_stored() == 0


async def test_list_shows_the_callers_orders_newest_first_with_links(client: ApiClient, shop: Shop) -> None:
    ids = [(await place(client, shop.owner, (shop.book["id"], quantity))).json()["id"] for quantity in (1, 2, 3)]
    assert (await place(client, shop.other, (shop.book["id"], 1))).status_code == 201

    first = await client.get(ORDERS, params={"limit": 2}, headers=shop.owner.headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [order["id"] for order in page["items"]] == ids[::-1][:2]
    assert (page["limit"], page["prev_cursor"]) == (2, None)
    assert page["next_cursor"]
    assert first.headers["link"] == f'<{ORDERS}?limit=2&cursor={page["next_cursor"]}>; rel="next"'

    second = await client.get(ORDERS, params={"limit": 2, "cursor": page["next_cursor"]}, headers=shop.owner.headers)
    assert second.status_code == 200, second.text
    assert [order["id"] for order in second.json()["items"]] == ids[:1]
    assert second.json()["next_cursor"] is None
    back = await client.get(
        ORDERS, params={"limit": 2, "cursor": second.json()["prev_cursor"]}, headers=shop.owner.headers
    )
    assert back.json()["items"] == page["items"]


async def test_cancel_answers_200_with_the_cancelled_order_and_returns_the_stock(client: ApiClient, shop: Shop) -> None:
    placed = (await place(client, shop.owner, (shop.book["id"], 4))).json()
    response = await client.post(f"{ORDERS}/{placed['id']}/cancel", headers=shop.owner.headers)
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] is not None
    assert {key: value for key, value in cancelled.items() if key not in {"status", "cancelled_at"}} == {
        key: value for key, value in placed.items() if key not in {"status", "cancelled_at"}
    }
    assert await stock_of(client, shop.book["id"]) == 50

    again = assert_problem(await client.post(f"{ORDERS}/{placed['id']}/cancel", headers=shop.owner.headers), 409)
    assert "already cancelled" in again["detail"]
    assert await stock_of(client, shop.book["id"]) == 50
    assert (await client.get(f"{ORDERS}/{placed['id']}", headers=shop.owner.headers)).json() == cancelled


async def test_orders_outlive_the_account_that_placed_them(client: ApiClient, shop: Shop) -> None:
    placed = (await place(client, shop.owner, (shop.book["id"], 2))).json()
    deleted = await client.delete("/api/v1/users/me", headers=shop.owner.headers)
    assert deleted.status_code == 204, deleted.text
    # The shop keeps the record, no longer linked to anyone: only admins see it now.
    kept = await client.get(f"{ORDERS}/{placed['id']}", headers=shop.admin.headers)
    assert kept.status_code == 200
    assert kept.json() == placed
    assert (await fetch_one("SELECT user_id FROM book_order WHERE id = $1", placed["id"])) == (None,)


# --- who may call what -----------------------------------------------------------------------------

CALLERS = ["anonymous", "other", "owner", "admin"]


def headers_of(shop: Shop, caller: str) -> dict[str, str]:
    accounts = {"other": shop.other, "owner": shop.owner, "admin": shop.admin}
    return accounts[caller].headers if caller in accounts else {}


@pytest.mark.parametrize(("caller", "status"), [("anonymous", 401), ("other", 201), ("owner", 201), ("admin", 201)])
async def test_who_may_place_an_order(client: ApiClient, shop: Shop, caller: str, status: int) -> None:
    response = await client.post(ORDERS, json=order_payload((shop.book["id"], 1)), headers=headers_of(shop, caller))
    assert response.status_code == status, response.text
    if status == 401:
        assert_problem(response, 401)
        assert await orders_stored() == 0


@pytest.mark.parametrize(("caller", "status"), [("anonymous", 401), ("other", 404), ("owner", 200), ("admin", 200)])
async def test_who_may_read_an_order(client: ApiClient, shop: Shop, caller: str, status: int) -> None:
    placed = (await place(client, shop.owner, (shop.book["id"], 1))).json()
    response = await client.get(f"{ORDERS}/{placed['id']}", headers=headers_of(shop, caller))
    if status == 200:
        assert response.status_code == 200, response.text
        assert response.json() == placed
    else:
        problem = assert_problem(response, status)
        assert "Kindred" not in response.text  # nothing of the order leaks
        if status == 404:
            # Exactly what an order that does not exist gets.
            missing = assert_problem(await client.get(f"{ORDERS}/987654", headers=headers_of(shop, caller)), 404)
            assert problem["detail"].replace(str(placed["id"]), "N") == missing["detail"].replace("987654", "N")


@pytest.mark.parametrize(("caller", "status"), [("anonymous", 401), ("other", 404), ("owner", 200), ("admin", 200)])
async def test_who_may_cancel_an_order(client: ApiClient, shop: Shop, caller: str, status: int) -> None:
    placed = (await place(client, shop.owner, (shop.book["id"], 5))).json()
    response = await client.post(f"{ORDERS}/{placed['id']}/cancel", headers=headers_of(shop, caller))
    if status == 200:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert await stock_of(client, shop.book["id"]) == 50
    else:
        assert_problem(response, status)
        assert (await client.get(f"{ORDERS}/{placed['id']}", headers=shop.owner.headers)).json() == placed
        assert await stock_of(client, shop.book["id"]) == 45


@pytest.mark.parametrize("caller", CALLERS)
async def test_who_sees_which_orders_in_the_list(client: ApiClient, shop: Shop, caller: str) -> None:
    placed = (await place(client, shop.owner, (shop.book["id"], 1))).json()
    own = await client.get(ORDERS, headers=headers_of(shop, caller))
    about_owner = await client.get(ORDERS, params={"user_id": shop.owner.id}, headers=headers_of(shop, caller))
    if caller == "anonymous":
        assert_problem(own, 401)
        assert_problem(about_owner, 401)
        return
    assert own.status_code == 200, own.text
    # Without user_id everyone sees only their own orders, admins included.
    assert own.json()["items"] == ([placed] if caller == "owner" else [])
    if caller == "other":
        assert_problem(about_owner, 403)
    else:
        assert about_owner.status_code == 200, about_owner.text
        assert about_owner.json()["items"] == [placed]


async def test_an_admin_lists_any_users_orders_page_by_page(client: ApiClient, shop: Shop) -> None:
    for _ in range(3):
        assert (await place(client, shop.owner, (shop.book["id"], 1))).status_code == 201
    first = await client.get(ORDERS, params={"user_id": shop.owner.id, "limit": 2}, headers=shop.admin.headers)
    cursor = first.json()["next_cursor"]
    second = await client.get(
        ORDERS, params={"user_id": shop.owner.id, "limit": 2, "cursor": cursor}, headers=shop.admin.headers
    )
    assert second.status_code == 200, second.text
    assert len(second.json()["items"]) == 1
    # The cursor belongs to the owner's listing, not to the admin's own.
    assert_problem(await client.get(ORDERS, params={"limit": 2, "cursor": cursor}, headers=shop.admin.headers), 400)


# --- Idempotency-Key -------------------------------------------------------------------------------


async def test_a_retry_with_the_same_key_replays_the_response(client: ApiClient, shop: Shop) -> None:
    first = await place(client, shop.owner, (shop.book["id"], 2), **{"Idempotency-Key": "order-1"})
    retry = await place(client, shop.owner, (shop.book["id"], 2), **{"Idempotency-Key": "order-1"})
    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await orders_stored() == 1
    assert await stock_of(client, shop.book["id"]) == 48


async def test_a_key_as_a_quoted_string_is_the_same_key(client: ApiClient, shop: Shop) -> None:
    first = await place(client, shop.owner, (shop.book["id"], 1), **{"Idempotency-Key": "abc-123"})
    retry = await place(client, shop.owner, (shop.book["id"], 1), **{"Idempotency-Key": '"abc-123"'})
    assert (retry.status_code, retry.content, retry.headers.get("idempotent-replayed")) == (201, first.content, "true")


async def test_the_same_key_with_another_body_is_422(client: ApiClient, shop: Shop) -> None:
    assert (await place(client, shop.owner, (shop.book["id"], 1), **{"Idempotency-Key": "k"})).status_code == 201
    problem = assert_problem(await place(client, shop.owner, (shop.book["id"], 2), **{"Idempotency-Key": "k"}), 422)
    assert "Idempotency-Key" in problem["detail"]
    assert await orders_stored() == 1


async def test_the_same_key_from_another_user_is_another_key(client: ApiClient, shop: Shop) -> None:
    mine = await place(client, shop.owner, (shop.book["id"], 1), **{"Idempotency-Key": "k"})
    theirs = await place(client, shop.other, (shop.book["id"], 2), **{"Idempotency-Key": "k"})
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "idempotent-replayed" not in theirs.headers
    assert await orders_stored() == 2


async def test_a_refused_request_may_be_retried_with_its_key(client: ApiClient, shop: Shop) -> None:
    scarce = await client.create_book(shop.other, stock=0)
    assert_problem(await place(client, shop.owner, (scarce["id"], 1), **{"Idempotency-Key": "k"}), 409)
    restocked = await client.patch(f"/api/v1/books/{scarce['id']}", json={"stock": 1}, headers=shop.other.headers)
    assert restocked.status_code == 200, restocked.text
    retry = await place(client, shop.owner, (scarce["id"], 1), **{"Idempotency-Key": "k"})
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers


@pytest.mark.parametrize("key", ["k" * 255, '"' + "k" * 255 + '"', "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", '"a"'])
async def test_keys_of_every_allowed_form_are_accepted(client: ApiClient, shop: Shop, key: str) -> None:
    response = await place(client, shop.owner, (shop.book["id"], 1), **{"Idempotency-Key": key})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "key",
    [
        b"",
        b"k" * 256,
        b'"' + b"k" * 256 + b'"',
        b"two words",
        b"tab\tinside",
        b'"a\\"b"',
        b'"a\\b"',
        b'a"b',
        b'"abc',
        b'""',
        "caf\u00e9".encode("latin-1"),
        "\u00e9t\u00e9".encode(),
    ],
    ids=repr,
)
async def test_malformed_keys_are_400_and_place_nothing(client: ApiClient, shop: Shop, key: bytes) -> None:
    response = await client.post(
        ORDERS, json=order_payload((shop.book["id"], 1)), headers={**shop.owner.headers, "Idempotency-Key": key}
    )
    problem = assert_problem(response, 400)
    # Litestar names a header parameter by its Python name.
    assert (problem["errors"][0]["key"], problem["errors"][0]["source"]) == ("idempotency_key", "header")
    assert await orders_stored() == 0


# --- bad input: a problem+json 4xx, never a 500, and nothing changes ----------------------------------

BAD_BODIES: list[Any] = [
    {},
    {"items": []},
    {"items": None},
    {"items": "all of them"},
    {"items": [{"book_id": 1, "quantity": 1}] * 2},  # the same book twice
    {"items": [{"book_id": n, "quantity": 1} for n in range(1, 52)]},  # 51 lines
    {"items": [{"book_id": 1}]},
    {"items": [{"quantity": 1}]},
    {"items": [{"book_id": 1, "quantity": 0}]},
    {"items": [{"book_id": 1, "quantity": 101}]},
    {"items": [{"book_id": 1, "quantity": -1}]},
    {"items": [{"book_id": 1, "quantity": 1.5}]},
    {"items": [{"book_id": 1, "quantity": True}]},
    {"items": [{"book_id": 1, "quantity": None}]},
    {"items": [{"book_id": 0, "quantity": 1}]},
    {"items": [{"book_id": -1, "quantity": 1}]},
    {"items": [{"book_id": 10**18 + 1, "quantity": 1}]},
    {"items": [{"book_id": 2**63, "quantity": 1}]},
    {"items": [{"book_id": 10**30, "quantity": 1}]},
    {"items": [{"book_id": "one", "quantity": 1}]},
    {"items": [{"book_id": 1, "quantity": 1, "unit_price": "0.01"}]},
    {"items": [{"book_id": 1, "quantity": 1}], "user_id": 1},
    [{"book_id": 1, "quantity": 1}],
    "items",
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=lambda body: repr(body)[:60])
async def test_invalid_bodies_are_400(client: ApiClient, shop: Shop, body: Any) -> None:
    assert_problem(await client.post(ORDERS, json=body, headers=shop.owner.headers), 400)
    assert await orders_stored() == 0
    assert await stock_of(client, shop.book["id"]) == 50


@pytest.mark.parametrize(
    "content", [b"", b"null", b"{", b'{"items": [', b'{"items": []}}', b"\xff\xfe", b"[" * 20_000], ids=repr
)
async def test_malformed_json_is_400(client: ApiClient, shop: Shop, content: bytes) -> None:
    headers = {**shop.owner.headers, "Content-Type": "application/json"}
    assert_problem(await client.post(ORDERS, content=content, headers=headers), 400)


async def test_a_body_not_declared_as_json_is_415(client: ApiClient, shop: Shop) -> None:
    headers = {**shop.owner.headers, "Content-Type": "text/plain"}
    content = b'{"items": [{"book_id": 1, "quantity": 1}]}'
    assert_problem(await client.post(ORDERS, content=content, headers=headers), 415)
    assert_problem(await client.post(ORDERS, headers=shop.owner.headers), 415)
    assert await orders_stored() == 0


@pytest.mark.parametrize("order_id", ["0", "01", "%2B1", "1000000000000000001", "99999999999999999999"])
@pytest.mark.parametrize("action", ["get", "cancel"])
async def test_bad_order_ids_are_400(client: ApiClient, shop: Shop, order_id: str, action: str) -> None:
    if action == "get":
        response = await client.get(f"{ORDERS}/{order_id}", headers=shop.owner.headers)
    else:
        response = await client.post(f"{ORDERS}/{order_id}/cancel", headers=shop.owner.headers)
    assert_problem(response, 400)


@pytest.mark.parametrize("action", ["get", "cancel"])
async def test_the_largest_order_id_is_simply_not_found(client: ApiClient, shop: Shop, action: str) -> None:
    path = f"{ORDERS}/{10**18}" + ("/cancel" if action == "cancel" else "")
    response = await (client.get if action == "get" else client.post)(path, headers=shop.owner.headers)
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("query", "key"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=1e1", "limit"),
        ("limit=05", "limit"),
        ("limit=5&limit=6", "limit"),
        ("cursor=", "cursor"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=" + "x" * 3000, "cursor"),
        ("user_id=0", "user_id"),
        ("user_id=2147483648", "user_id"),
        ("user_id=abc", "user_id"),
        ("user_id=1.0", "user_id"),
        ("user_id=%2B1", "user_id"),
    ],
)
async def test_invalid_list_parameters_are_400(client: ApiClient, shop: Shop, query: str, key: str) -> None:
    problem = assert_problem(await client.get(f"{ORDERS}?{query}", headers=shop.admin.headers), 400)
    assert problem["errors"][0]["key"] == key, problem


async def test_several_idempotency_keys_are_400_and_place_nothing(client: ApiClient, shop: Shop) -> None:
    headers = [*shop.owner.headers.items(), ("Idempotency-Key", "first"), ("Idempotency-Key", "second")]
    response = await client.post(ORDERS, json=order_payload((shop.book["id"], 1)), headers=headers)
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["key"] == "Idempotency-Key"
    assert await orders_stored() == 0


async def test_an_empty_body_is_400_saying_so(client: ApiClient, shop: Shop) -> None:
    headers = {**shop.owner.headers, "content-type": "application/json"}
    problem = assert_problem(await client.post(ORDERS, content=b"", headers=headers), 400)
    assert problem["errors"][0]["message"] == "is empty; send a JSON document"


async def test_a_cursor_of_another_listing_is_400_both_ways(client: ApiClient, shop: Shop) -> None:
    await client.create_book(shop.other)
    for _ in range(2):
        assert (await place(client, shop.owner, (shop.book["id"], 1))).status_code == 201
    books_cursor = (await client.get("/api/v1/books?limit=1")).json()["next_cursor"]
    orders_cursor = (await client.get(f"{ORDERS}?limit=1", headers=shop.owner.headers)).json()["next_cursor"]
    assert books_cursor
    assert orders_cursor
    problem = assert_problem(await client.get(f"{ORDERS}?cursor={books_cursor}", headers=shop.owner.headers), 400)
    assert problem["errors"][0]["key"] == "cursor"
    problem = assert_problem(await client.get(f"/api/v1/books?cursor={orders_cursor}"), 400)
    assert problem["errors"][0]["key"] == "cursor"


async def test_a_cursor_of_another_users_listing_is_400(client: ApiClient, shop: Shop) -> None:
    for _ in range(2):
        assert (await place(client, shop.owner, (shop.book["id"], 1))).status_code == 201
    cursor = (await client.get(ORDERS, params={"limit": 1}, headers=shop.owner.headers)).json()["next_cursor"]
    problem = assert_problem(await client.get(ORDERS, params={"cursor": cursor}, headers=shop.other.headers), 400)
    assert problem["errors"][0]["key"] == "cursor"


# --- the database failing under an order: 503, nothing placed, the pool still serving -----------------


@contextlib.asynccontextmanager
async def book_locked(database_url: str, book_id: int) -> AsyncIterator[asyncpg.Connection]:
    """Hold the book's row lock in a transaction of another connection, as a slow writer would."""
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM book WHERE id = $1 FOR UPDATE", book_id)
            yield holder
    finally:
        await holder.close()


async def backend_waiting_for_a_lock(holder: asyncpg.Connection) -> int:
    """The pid of the session waiting for a row lock (the order's), polled until it appears."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # Inside a transaction PostgreSQL keeps showing its first view of the activity unless told not to.
        await holder.execute("SELECT pg_stat_clear_snapshot()")
        pid = await holder.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR NO KEY UPDATE%'"
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.01)  # polling, bounded by the deadline
    raise AssertionError("the order never waited for the book's lock")


async def test_a_connection_lost_in_the_middle_of_an_order_answers_503_and_places_nothing(
    client: ApiClient, shop: Shop, database_url: str
) -> None:
    async with book_locked(database_url, shop.book["id"]) as holder:
        request = asyncio.create_task(place(client, shop.owner, (shop.book["id"], 1)))
        await holder.execute("SELECT pg_terminate_backend($1)", await backend_waiting_for_a_lock(holder))
        response = await request
    assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    assert await orders_stored() == 0
    assert await stock_of(client, shop.book["id"]) == 50
    # The pool replaced the dead connection: the next order goes through.
    assert (await place(client, shop.owner, (shop.book["id"], 1))).status_code == 201


async def test_an_order_stopped_by_statement_timeout_answers_503_and_rolls_back(
    client: ApiClient, shop: Shop, database_url: str, settings: Settings
) -> None:
    # The statement waits for the lock until statement_timeout cancels it (a few seconds).
    async with book_locked(database_url, shop.book["id"]):
        started = time.monotonic()
        response = await place(client, shop.owner, (shop.book["id"], 1), **{"Idempotency-Key": "slow"})
        waited = time.monotonic() - started
    assert_problem(response, 503)
    assert settings.db_statement_timeout_seconds <= waited < settings.db_command_timeout_seconds
    # The key was rolled back with the rest: a retry places the order.
    assert await orders_stored() == 0
    retry = await place(client, shop.owner, (shop.book["id"], 1), **{"Idempotency-Key": "slow"})
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
