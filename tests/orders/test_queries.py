"""The data layer of orders (``bookstore.orders.queries``) called directly on the real database:
placing all or nothing, prices captured, idempotent replays, cancelling once, reading and paging,
and the same under real concurrency (transactions on several pooled connections at once)."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar

from bookstore.accounts.service import register_user
from bookstore.books.queries import Actor, create_book, delete_book, update_book
from bookstore.books.queries import get_book as get_catalogue_book
from bookstore.books.schemas import BookCreate
from bookstore.core.database import fetch_all, fetch_one
from bookstore.core.errors import AuthenticationError, ConflictError, NotFoundError
from bookstore.orders.idempotency import IdempotencyKeyReusedError, IdempotentRequest, request_fingerprint
from bookstore.orders.queries import (
    OrderPosition,
    cancel_order,
    get_order,
    list_orders,
    place_order,
)
from bookstore.orders.schemas import MAX_LINES, MAX_QUANTITY, Order, OrderCreate, OrderItemCreate
from tests.helpers import PASSWORD, unique_email, unique_isbn

_decode_order = msgspec.json.Decoder(Order).decode


def order_of(*lines: tuple[int, int]) -> OrderCreate:
    return OrderCreate(items=[OrderItemCreate(book_id=book_id, quantity=quantity) for book_id, quantity in lines])


def keyed(key: str, order: OrderCreate) -> IdempotentRequest:
    return IdempotentRequest(key, request_fingerprint(order))


async def new_user() -> int:
    return (await register_user(unique_email(), PASSWORD)).id


async def new_book(owner: int, *, stock: int, price: str = "12.50", title: str = "The Dispossessed") -> int:
    data = BookCreate(
        title=title,
        author="Ursula K. Le Guin",
        publish_date=date(1974, 5, 1),
        isbn=unique_isbn(),
        price=Decimal(price),
        stock=stock,
    )
    book, _ = await create_book(data, owner)
    return book.id


async def stock_of(book_id: int) -> int:
    row = await fetch_one("SELECT stock FROM book WHERE id = $1", book_id)
    assert row is not None
    stock: int = row["stock"]
    return stock


async def version_of(book_id: int) -> int:
    _, version = await get_catalogue_book(book_id)
    return version


async def count(table: str) -> int:
    row = await fetch_one(f"SELECT count(*) FROM {table}")  # noqa: S608 - a table name of the test's own
    assert row is not None
    counted: int = row[0]
    return counted


@pytest.fixture
async def buyer(app: Litestar) -> int:
    return await new_user()


@pytest.fixture
async def seller(app: Litestar) -> int:
    return await new_user()


# --- placing ---------------------------------------------------------------------------------


async def test_placed_order_takes_the_stock_and_captures_titles_and_prices(buyer: int, seller: int) -> None:
    dune = await new_book(seller, stock=5, price="9.99", title="Dune")
    solaris = await new_book(seller, stock=2, price="12.00", title="Solaris")
    placement = await place_order(buyer, order_of((solaris, 2), (dune, 3)))

    order = _decode_order(placement.body)
    assert (placement.status_code, placement.replayed, placement.location) == (201, False, f"/api/v1/orders/{order.id}")
    assert order.status == "placed"
    assert order.cancelled_at is None
    # Lines by book id, whatever the request's order.
    assert [(item.book_id, item.title, item.quantity, item.unit_price, item.line_total) for item in order.items] == [
        (dune, "Dune", 3, Decimal("9.99"), Decimal("29.97")),
        (solaris, "Solaris", 2, Decimal("12.00"), Decimal("24.00")),
    ]
    assert order.total == Decimal("53.97")
    assert (await stock_of(dune), await stock_of(solaris)) == (2, 0)
    assert await get_order(order.id, buyer) == order


async def test_total_is_exact_decimal_arithmetic(buyer: int, seller: int) -> None:
    # 0.10 + 0.20 is 0.30000000000000004 in binary floating point.
    first = await new_book(seller, stock=1, price="0.10")
    second = await new_book(seller, stock=1, price="0.20")
    order = _decode_order((await place_order(buyer, order_of((first, 1), (second, 1)))).body)
    assert str(order.total) == "0.30"
    row = await fetch_one("SELECT total FROM book_order WHERE id = $1", order.id)
    assert row is not None
    assert row["total"] == Decimal("0.30")


async def test_the_largest_possible_order_fits_its_total(buyer: int, seller: int) -> None:
    # 50 lines of 100 copies at the highest price a book may have.
    books = [await new_book(seller, stock=MAX_QUANTITY, price="9999999999.99") for _ in range(MAX_LINES)]
    order = _decode_order((await place_order(buyer, order_of(*((book, MAX_QUANTITY) for book in books)))).body)
    assert order.total == Decimal("49999999999950.00")
    assert await get_order(order.id, buyer) == order


async def test_placing_bumps_the_version_of_every_book_it_takes_from(buyer: int, seller: int) -> None:
    first, second, untouched = (
        await new_book(seller, stock=3),
        await new_book(seller, stock=3),
        await new_book(seller, stock=3),
    )
    await place_order(buyer, order_of((first, 1), (second, 2)))
    assert (await version_of(first), await version_of(second), await version_of(untouched)) == (2, 2, 1)


async def test_a_later_price_change_does_not_change_a_placed_order(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=3, price="10.00", title="Kindred")
    placed = _decode_order((await place_order(buyer, order_of((book, 2)))).body)
    await update_book(book, {"price": Decimal("99.00"), "title": "Kindred (2nd ed.)"}, Actor(seller, False), None)
    fetched = await get_order(placed.id, buyer)
    assert (fetched.items[0].unit_price, fetched.items[0].title, fetched.total) == (
        Decimal("10.00"),
        "Kindred",
        Decimal("20.00"),
    )


async def test_unknown_books_are_named_and_nothing_changes(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    with pytest.raises(NotFoundError) as raised:
        await place_order(buyer, order_of((book, 1), (987654, 1), (987653, 2)))
    assert raised.value.extra == {"unknown_book_ids": [987653, 987654]}
    assert "987653" in raised.value.detail
    assert "987654" in raised.value.detail
    assert await stock_of(book) == 5
    assert await count("book_order") == 0


async def test_lines_short_of_stock_are_named_with_what_is_available_and_nothing_changes(
    buyer: int, seller: int
) -> None:
    plenty = await new_book(seller, stock=50)
    few = await new_book(seller, stock=2)
    none = await new_book(seller, stock=0)
    with pytest.raises(ConflictError) as raised:
        await place_order(buyer, order_of((plenty, 10), (few, 3), (none, 1)))
    assert raised.value.extra == {
        "unavailable": [
            {"book_id": few, "requested": 3, "available": 2},
            {"book_id": none, "requested": 1, "available": 0},
        ]
    }
    assert (await stock_of(plenty), await stock_of(few), await stock_of(none)) == (50, 2, 0)
    assert (await version_of(plenty), await version_of(few)) == (1, 1)
    assert (await count("book_order"), await count("order_item")) == (0, 0)


async def test_exactly_the_whole_stock_can_be_ordered(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=7)
    await place_order(buyer, order_of((book, 7)))
    assert await stock_of(book) == 0
    with pytest.raises(ConflictError):
        await place_order(buyer, order_of((book, 1)))


async def test_an_order_by_a_deleted_user_is_refused(seller: int) -> None:
    book = await new_book(seller, stock=5)
    with pytest.raises(AuthenticationError):
        await place_order(987654, order_of((book, 1)))
    assert await stock_of(book) == 5


async def test_the_database_refuses_negative_stock_as_a_last_line_of_defence(seller: int) -> None:
    book = await new_book(seller, stock=1)
    with pytest.raises(asyncpg.CheckViolationError):
        await fetch_one("UPDATE book SET stock = stock - 2 WHERE id = $1", book)
    assert await stock_of(book) == 1


# --- idempotency ---------------------------------------------------------------------------------


async def test_a_retry_with_the_same_key_replays_the_first_response_and_places_nothing(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    order = order_of((book, 2))
    first = await place_order(buyer, order, keyed("k-1", order))
    retry = await place_order(buyer, order, keyed("k-1", order))
    assert (retry.status_code, retry.body, retry.location) == (first.status_code, first.body, first.location)
    assert (first.replayed, retry.replayed) == (False, True)
    assert await stock_of(book) == 3
    assert await count("book_order") == 1


async def test_the_same_key_with_another_body_is_refused_and_changes_nothing(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    await place_order(buyer, order_of((book, 1)), keyed("k-2", order_of((book, 1))))
    other = order_of((book, 2))
    with pytest.raises(IdempotencyKeyReusedError):
        await place_order(buyer, other, keyed("k-2", other))
    assert await stock_of(book) == 4
    assert await count("book_order") == 1


async def test_keys_belong_to_their_user(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    other_buyer = await new_user()
    order = order_of((book, 1))
    mine = await place_order(buyer, order, keyed("shared-key", order))
    theirs = await place_order(other_buyer, order, keyed("shared-key", order))
    assert not theirs.replayed
    assert _decode_order(mine.body).id != _decode_order(theirs.body).id
    assert await stock_of(book) == 3


async def test_a_refused_request_leaves_its_key_unused(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=0)
    order = order_of((book, 1))
    with pytest.raises(ConflictError):
        await place_order(buyer, order, keyed("k-3", order))
    assert await count("idempotency_key") == 0
    await update_book(book, {"stock": 1}, Actor(seller, False), None)
    retried = await place_order(buyer, order, keyed("k-3", order))
    assert not retried.replayed
    assert await stock_of(book) == 0


async def test_an_expired_key_counts_as_never_used(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    first_order = order_of((book, 1))
    await place_order(buyer, first_order, keyed("k-4", first_order))
    await fetch_one("UPDATE idempotency_key SET expires_at = now() - interval '1 second'")
    # Another body would be refused while the key lived; now it is a new request.
    second_order = order_of((book, 2))
    second = await place_order(buyer, second_order, keyed("k-4", second_order))
    assert not second.replayed
    assert await stock_of(book) == 2
    rows = await fetch_all("SELECT key, request_hash FROM idempotency_key")
    assert [(row["key"], row["request_hash"]) for row in rows] == [("k-4", request_fingerprint(second_order))]


async def test_a_keyed_request_deletes_the_users_expired_keys_only(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=10)
    other_buyer = await new_user()
    for user, key in [(buyer, "old-1"), (buyer, "old-2"), (other_buyer, "old-3")]:
        await place_order(user, order_of((book, 1)), keyed(key, order_of((book, 1))))
    await fetch_one("UPDATE idempotency_key SET expires_at = now() - interval '1 second'")
    await place_order(buyer, order_of((book, 1)), keyed("new", order_of((book, 1))))
    rows = await fetch_all("SELECT user_id, key FROM idempotency_key ORDER BY key")
    assert [(row["user_id"], row["key"]) for row in rows] == [(buyer, "new"), (other_buyer, "old-3")]


def test_the_fingerprint_ignores_the_order_of_the_lines_but_not_their_content() -> None:
    assert request_fingerprint(order_of((1, 2), (3, 4))) == request_fingerprint(order_of((3, 4), (1, 2)))
    assert request_fingerprint(order_of((1, 2))) != request_fingerprint(order_of((1, 3)))
    assert request_fingerprint(order_of((1, 2))) != request_fingerprint(order_of((2, 1)))


# --- cancelling ----------------------------------------------------------------------------------


async def test_cancel_returns_the_stock_once_and_marks_the_order(buyer: int, seller: int) -> None:
    first = await new_book(seller, stock=5)
    second = await new_book(seller, stock=5)
    placed = _decode_order((await place_order(buyer, order_of((first, 2), (second, 5)))).body)
    cancelled = await cancel_order(placed.id, buyer)
    assert cancelled.status == "cancelled"
    assert cancelled.cancelled_at is not None
    assert (cancelled.items, cancelled.total) == (placed.items, placed.total)
    assert (await stock_of(first), await stock_of(second)) == (5, 5)
    # Placing and cancelling each bumped the version.
    assert (await version_of(first), await version_of(second)) == (3, 3)
    with pytest.raises(ConflictError):
        await cancel_order(placed.id, buyer)
    assert (await stock_of(first), await stock_of(second)) == (5, 5)
    assert await get_order(placed.id, buyer) == cancelled


async def test_cancel_of_another_users_order_is_not_found_and_changes_nothing(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    placed = _decode_order((await place_order(buyer, order_of((book, 2)))).body)
    with pytest.raises(NotFoundError):
        await cancel_order(placed.id, seller)
    assert (await get_order(placed.id, buyer)).status == "placed"
    assert await stock_of(book) == 3


async def test_an_admin_may_cancel_any_order(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    placed = _decode_order((await place_order(buyer, order_of((book, 2)))).body)
    assert (await cancel_order(placed.id, None)).status == "cancelled"
    assert await stock_of(book) == 5


async def test_cancel_of_a_missing_order_is_not_found(app: Litestar) -> None:
    with pytest.raises(NotFoundError):
        await cancel_order(987654, None)


async def test_cancel_skips_books_deleted_since_and_keeps_their_lines(buyer: int, seller: int) -> None:
    kept = await new_book(seller, stock=5, title="Kept")
    deleted = await new_book(seller, stock=5, title="Deleted")
    placed = _decode_order((await place_order(buyer, order_of((kept, 1), (deleted, 2)))).body)
    await delete_book(deleted, Actor(seller, False), None)
    cancelled = await cancel_order(placed.id, buyer)
    assert [(item.book_id, item.title, item.quantity) for item in cancelled.items] == [
        (kept, "Kept", 1),
        (None, "Deleted", 2),
    ]
    assert await stock_of(kept) == 5


# --- reading -------------------------------------------------------------------------------------


async def test_get_order_of_another_user_is_not_found_but_admins_see_it(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    placed = _decode_order((await place_order(buyer, order_of((book, 1)))).body)
    with pytest.raises(NotFoundError):
        await get_order(placed.id, seller)
    assert await get_order(placed.id, None) == placed


async def test_list_pages_through_the_users_orders_newest_first(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=100)
    other_buyer = await new_user()
    mine = []
    for quantity in range(1, 6):
        mine.append(_decode_order((await place_order(buyer, order_of((book, quantity)))).body).id)
        await place_order(other_buyer, order_of((book, 1)))
    newest_first = mine[::-1]

    first = await list_orders(buyer, 2)
    assert [order.id for order in first.orders] == newest_first[:2]
    assert first.prev_position is None
    assert first.next_position == OrderPosition("after", newest_first[1])
    second = await list_orders(buyer, 2, first.next_position)
    assert [order.id for order in second.orders] == newest_first[2:4]
    assert second.next_position is not None
    assert second.prev_position is not None
    last = await list_orders(buyer, 2, second.next_position)
    assert [order.id for order in last.orders] == newest_first[4:]
    assert last.next_position is None
    assert last.prev_position is not None
    back = await list_orders(buyer, 2, last.prev_position)
    assert [order.id for order in back.orders] == newest_first[2:4]
    back_to_first = await list_orders(buyer, 2, back.prev_position)
    assert [order.id for order in back_to_first.orders] == newest_first[:2]
    assert back_to_first.prev_position is None
    assert back_to_first.next_position == first.next_position


async def test_a_page_past_the_end_leads_back(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=5)
    only = _decode_order((await place_order(buyer, order_of((book, 1)))).body).id
    past = await list_orders(buyer, 5, OrderPosition("after", only))
    assert (past.orders, past.next_position) == ([], None)
    assert past.prev_position is not None
    assert [order.id for order in (await list_orders(buyer, 5, past.prev_position)).orders] == [only]


async def test_list_of_a_user_without_orders_is_empty(buyer: int) -> None:
    listing = await list_orders(buyer, 20)
    assert (listing.orders, listing.next_position, listing.prev_position) == ([], None, None)


# --- concurrency: transactions on several pooled connections at once -------------------------------


async def test_concurrent_orders_never_oversell(seller: int) -> None:
    buyers = [await new_user() for _ in range(20)]
    for _ in range(3):
        book = await new_book(seller, stock=5)
        outcomes = await asyncio.gather(
            *(place_order(user, order_of((book, 1))) for user in buyers), return_exceptions=True
        )
        placed = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
        refused = [outcome for outcome in outcomes if isinstance(outcome, ConflictError)]
        assert (len(placed), len(refused)) == (5, 15), outcomes
        assert await stock_of(book) == 0
        rows = await fetch_all("SELECT count(*) FROM order_item WHERE book_id = $1", book)
        assert rows[0][0] == 5


async def test_concurrent_orders_of_the_same_books_in_opposite_orders_do_not_deadlock(buyer: int, seller: int) -> None:
    first = await new_book(seller, stock=1000)
    second = await new_book(seller, stock=1000)
    forwards, backwards = order_of((first, 1), (second, 2)), order_of((second, 2), (first, 1))
    for _ in range(5):
        await asyncio.gather(*(place_order(buyer, forwards if n % 2 else backwards) for n in range(10)))
    assert (await stock_of(first), await stock_of(second)) == (1000 - 50, 1000 - 100)
    assert await count("book_order") == 50


async def test_concurrent_retries_with_one_key_place_one_order(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=100)
    order = order_of((book, 3))
    placements = await asyncio.gather(*(place_order(buyer, order, keyed("same", order)) for _ in range(8)))
    assert len({placement.body for placement in placements}) == 1
    assert sorted(placement.replayed for placement in placements) == [False] + [True] * 7
    assert await stock_of(book) == 97
    assert await count("book_order") == 1


async def test_concurrent_cancels_return_the_stock_once(buyer: int, seller: int) -> None:
    book = await new_book(seller, stock=10)
    for _ in range(3):
        placed = _decode_order((await place_order(buyer, order_of((book, 4)))).body)
        outcomes: list[Any] = await asyncio.gather(
            *(cancel_order(placed.id, buyer) for _ in range(5)), return_exceptions=True
        )
        assert sum(isinstance(outcome, Order) for outcome in outcomes) == 1, outcomes
        assert sum(isinstance(outcome, ConflictError) for outcome in outcomes) == 4, outcomes
        assert await stock_of(book) == 10
