"""Placing, reading and cancelling orders: every statement of the order path, and the
transactions that run them.

As in ``books.queries``, these are parameterised statements run straight on the pool's
connections (prepared and cached by asyncpg): building them with Piccolo would cost more CPU than
PostgreSQL spends on them. The statements are module constants so that the benchmark floor
(``benchmarks/floor.py``) runs exactly these.

Placing an order is one transaction on one connection (:func:`place_order`):

1. with an ``Idempotency-Key`` only, :data:`CLAIM_IDEMPOTENCY_KEY`: a duplicate running at the
   same time waits on the key's unique index until the first transaction ends, then replays its
   response (or is refused with 422 for another body); if the first rolled back, it proceeds;
2. :data:`LOCK_BOOKS`: the ordered books, locked in id order, so that orders sharing books
   (and cancels) always wait for each other in the same order and cannot deadlock;
3. in Python: unknown books (404) and lines short of stock (409) end the transaction with nothing
   changed; the total is summed from the locked prices with ``Decimal``;
4. :data:`PLACE_ORDER`: one statement that takes the stock, and inserts the order and its lines;
5. with a key only, :data:`STORE_IDEMPOTENT_RESPONSE`: the response, for the retries.

Only a placed order's response (201) is stored: a refusal rolls the key back with everything else,
so a retry of a refused request tries again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import Any, Literal

import asyncpg
import msgspec

from bookstore.core.database import fetch_all, transaction
from bookstore.core.errors import AuthenticationError, ConflictError, NotFoundError
from bookstore.orders.idempotency import (
    IDEMPOTENCY_KEY_TTL,
    IdempotencyKeyReusedError,
    IdempotentRequest,
    StoredResponse,
)
from bookstore.orders.schemas import ORDERS_PATH, Order, OrderCreate, OrderItem, OrderItemCreate

__all__ = [
    "CANCEL_ORDER",
    "CLAIM_IDEMPOTENCY_KEY",
    "GET_ORDER",
    "LOCK_BOOKS",
    "ORDERS_NEWER_THAN",
    "ORDERS_OLDER_THAN",
    "ORDER_STATUS",
    "PLACE_ORDER",
    "READ_IDEMPOTENT_RESPONSE",
    "RESTOCK_BOOKS",
    "STORE_IDEMPOTENT_RESPONSE",
    "OrderListing",
    "OrderPosition",
    "Placement",
    "cancel_order",
    "get_order",
    "list_orders",
    "place_order",
]

# --- Placing an order (POST /api/v1/orders) ---------------------------------------------------

# $1 user, $2 key, $3 request fingerprint, $4 lifetime. Inserts the key, or takes over an expired
# one; returns a row only then. On the way, the user's other expired keys are deleted (SKIP LOCKED:
# one another request is deleting or claiming waits for nobody and deadlocks with nobody).
CLAIM_IDEMPOTENCY_KEY = """\
WITH expired AS (
    DELETE FROM idempotency_key WHERE id IN (
        SELECT id FROM idempotency_key
        WHERE user_id = $1 AND key <> $2 AND expires_at <= now()
        FOR UPDATE SKIP LOCKED
    )
)
INSERT INTO idempotency_key (user_id, key, request_hash, expires_at)
VALUES ($1, $2, $3, now() + $4::interval)
ON CONFLICT (user_id, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, status_code = NULL, response = NULL, location = NULL,
        created_at = now(), expires_at = EXCLUDED.expires_at
    WHERE idempotency_key.expires_at <= now()
RETURNING id"""

# $1 user, $2 key: the response stored by the transaction that claimed the key first.
READ_IDEMPOTENT_RESPONSE = """\
SELECT request_hash, status_code, response, location FROM idempotency_key
WHERE user_id = $1 AND key = $2 AND expires_at > now()"""

# $1 book ids, ascending. NO KEY UPDATE: the lock an UPDATE of non-key columns takes, which still
# lets other transactions insert rows referencing these books (their foreign key checks).
LOCK_BOOKS = "SELECT id, title, price, stock FROM book WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE"

# $1 user, $2 book ids (ascending, locked), $3 quantities, $4 titles, $5 unit prices, $6 total.
# The book table's trigger gives every book whose stock changes a new version (ETag) and updated_at.
PLACE_ORDER = """\
WITH line AS (
    SELECT * FROM unnest($2::bigint[], $3::integer[], $4::text[], $5::numeric[]) WITH ORDINALITY
        AS line (book_id, quantity, title, unit_price, line_number)
), taken AS (
    UPDATE book SET stock = book.stock - line.quantity
    FROM line WHERE book.id = line.book_id
), placed AS (
    INSERT INTO book_order (user_id, total) VALUES ($1, $6) RETURNING id, created_at
), stored AS (
    INSERT INTO order_item (order_id, book_id, title, quantity, unit_price)
    SELECT placed.id, line.book_id, line.title, line.quantity, line.unit_price
    FROM placed CROSS JOIN line ORDER BY line.line_number
)
SELECT id, created_at FROM placed"""

# $1 user, $2 key, $3 status, $4 body, $5 Location.
STORE_IDEMPOTENT_RESPONSE = """\
UPDATE idempotency_key SET status_code = $3, response = $4, location = $5
WHERE user_id = $1 AND key = $2"""

# --- Reading orders ----------------------------------------------------------------------------

# An order and its lines, one row per line, lines in the order they were placed (by book id).
_ORDER_ROWS = (
    "SELECT o.id, o.status, o.total, o.created_at, o.cancelled_at, i.book_id, i.title, i.quantity, i.unit_price"
)
# $1 order, $2 owner (NULL: any owner, for admins).
GET_ORDER = f"""\
{_ORDER_ROWS}
FROM book_order AS o JOIN order_item AS i ON i.order_id = o.id
WHERE o.id = $1 AND ($2::integer IS NULL OR o.user_id = $2)
ORDER BY i.id"""
# $1 user, $2 order id, $3 orders: the user's next orders older than $2, newest first.
ORDERS_OLDER_THAN = f"""\
{_ORDER_ROWS}
FROM (SELECT * FROM book_order WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3) AS o
JOIN order_item AS i ON i.order_id = o.id
ORDER BY o.id DESC, i.id"""  # noqa: S608 - composed of constants only
# $1 user, $2 order id, $3 orders: the user's orders just newer than $2, newest first.
ORDERS_NEWER_THAN = f"""\
{_ORDER_ROWS}
FROM (SELECT * FROM book_order WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3) AS o
JOIN order_item AS i ON i.order_id = o.id
ORDER BY o.id DESC, i.id"""  # noqa: S608 - composed of constants only

# --- Cancelling an order -----------------------------------------------------------------------

# $1 order, $2 owner (NULL: any owner). The status flip is the guard that returns the stock once:
# a second cancel, even a concurrent one (it waits for the first's row lock), changes no row.
CANCEL_ORDER = f"""\
WITH cancelled AS (
    UPDATE book_order SET status = 'cancelled', cancelled_at = now()
    WHERE id = $1 AND ($2::integer IS NULL OR user_id = $2) AND status = 'placed'
    RETURNING *
)
{_ORDER_ROWS}
FROM cancelled AS o JOIN order_item AS i ON i.order_id = o.id
ORDER BY i.id"""  # noqa: S608 - composed of constants only
# $1 order, $2 owner (NULL: any owner): why a cancel changed nothing.
ORDER_STATUS = "SELECT status FROM book_order WHERE id = $1 AND ($2::integer IS NULL OR user_id = $2)"
# $1 book ids (locked first with LOCK_BOOKS, in id order), $2 quantities. Books deleted since the
# order was placed are simply not there; the others get a new version from the table's trigger.
RESTOCK_BOOKS = """\
UPDATE book SET stock = book.stock + line.quantity
FROM unnest($1::bigint[], $2::integer[]) AS line (book_id, quantity)
WHERE book.id = line.book_id"""

# Ids are bigserial: every order id is below this, so a first page lists "orders older than it".
_ABOVE_EVERY_ID = 2**63 - 1
# The only outcome stored for replays: a refusal rolls its key back with everything else.
_CREATED = int(HTTPStatus.CREATED)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Placement:
    """The answer to a request to place an order: the order's JSON, exactly as first sent
    (``replayed``: for an earlier request with the same ``Idempotency-Key``)."""

    status_code: int
    body: bytes
    location: str
    replayed: bool


@dataclass(frozen=True)
class OrderPosition:
    """Where a page starts: just after (older than) or before (newer than) the order ``order_id``."""

    direction: Literal["after", "before"]
    order_id: int


@dataclass(frozen=True)
class OrderListing:
    orders: list[Order]
    next_position: OrderPosition | None
    prev_position: OrderPosition | None


def _orders_of(rows: Iterable[Mapping[str, Any]]) -> list[Order]:
    """The orders of rows selected with ``_ORDER_ROWS`` (one row per line), in row order."""
    orders: dict[int, Order] = {}
    for row in rows:
        order = orders.get(row["id"])
        if order is None:
            order = orders[row["id"]] = Order(
                id=row["id"],
                status=row["status"],
                items=[],
                total=row["total"],
                created_at=row["created_at"],
                cancelled_at=row["cancelled_at"],
            )
        unit_price: Decimal = row["unit_price"]
        order.items.append(
            OrderItem(row["book_id"], row["title"], row["quantity"], unit_price, unit_price * row["quantity"])
        )
    return list(orders.values())


async def _claim_key(connection: asyncpg.Connection, user_id: int, request: IdempotentRequest) -> StoredResponse | None:
    """Claim the key for this transaction (None), or the response its first request got."""
    claimed = await connection.fetchrow(
        CLAIM_IDEMPOTENCY_KEY, user_id, request.key, request.fingerprint, IDEMPOTENCY_KEY_TTL
    )
    if claimed is not None:
        return None
    stored = await connection.fetchrow(READ_IDEMPOTENT_RESPONSE, user_id, request.key)
    if stored is None:
        # Claimed by a transaction that has neither committed nor rolled back as far as this one
        # can see (its key expired or was deleted in between): the client's retry settles it.
        raise ConflictError("A request with this Idempotency-Key is being processed; retry it.")
    if stored["request_hash"] != request.fingerprint:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was used for a request with another body; use a new key for a new request."
        )
    return StoredResponse(stored["status_code"], stored["response"], stored["location"])


def _check_availability(lines: list[OrderItemCreate], books: Mapping[int, asyncpg.Record]) -> None:
    """404 naming the books that do not exist, else 409 naming those short of stock."""
    unknown = [line.book_id for line in lines if line.book_id not in books]
    if unknown:
        raise NotFoundError(
            f"No book has the id {', '.join(map(str, unknown))}; nothing was ordered.",
            extra={"unknown_book_ids": unknown},
        )
    short = [
        {"book_id": line.book_id, "requested": line.quantity, "available": books[line.book_id]["stock"]}
        for line in lines
        if books[line.book_id]["stock"] < line.quantity
    ]
    if short:
        named = ", ".join(f"book {line['book_id']} has {line['available']}" for line in short)
        raise ConflictError(f"Not enough stock: {named}; nothing was ordered.", extra={"unavailable": short})


async def place_order(user_id: int, order: OrderCreate, idempotency: IdempotentRequest | None = None) -> Placement:
    """Place ``order`` for the user, all or nothing, or replay the first response to a request
    with the same ``Idempotency-Key`` (see the module docstring for the steps)."""
    # By book id: the order in which the books are locked, and the lines listed.
    lines = sorted(order.items, key=lambda line: line.book_id)
    book_ids = [line.book_id for line in lines]
    try:
        async with transaction() as connection:
            if idempotency is not None:
                stored = await _claim_key(connection, user_id, idempotency)
                if stored is not None:
                    return Placement(stored.status_code, stored.body, stored.location, replayed=True)
            books = {row["id"]: row for row in await connection.fetch(LOCK_BOOKS, book_ids)}
            _check_availability(lines, books)
            items = [
                OrderItem(
                    line.book_id,
                    books[line.book_id]["title"],
                    line.quantity,
                    books[line.book_id]["price"],
                    books[line.book_id]["price"] * line.quantity,
                )
                for line in lines
            ]
            total = sum((item.line_total for item in items), Decimal("0.00"))
            placed = await connection.fetchrow(
                PLACE_ORDER,
                user_id,
                book_ids,
                [item.quantity for item in items],
                [item.title for item in items],
                [item.unit_price for item in items],
                total,
            )
            if placed is None:
                raise RuntimeError("INSERT ... RETURNING returned no row")
            body = _encoder.encode(Order(placed["id"], "placed", items, total, placed["created_at"], None))
            location = f"{ORDERS_PATH}/{placed['id']}"
            if idempotency is not None:
                await connection.execute(STORE_IDEMPOTENT_RESPONSE, user_id, idempotency.key, _CREATED, body, location)
    except asyncpg.ForeignKeyViolationError:
        # The user was deleted by a concurrent request after this one was authenticated.
        raise AuthenticationError("The account no longer exists.") from None
    return Placement(_CREATED, body, location, replayed=False)


async def get_order(order_id: int, owner_id: int | None) -> Order:
    """The order, if ``owner_id`` placed it (any order when None); else NotFoundError, so that
    another user's order looks exactly like one that does not exist."""
    orders = _orders_of(await fetch_all(GET_ORDER, order_id, owner_id, read_only=True))
    if not orders:
        raise NotFoundError(f"Order {order_id} does not exist.")
    return orders[0]


async def list_orders(user_id: int, limit: int, position: OrderPosition | None = None) -> OrderListing:
    """One page of the user's orders, newest first, and the positions of its neighbours."""
    if position is not None and position.direction == "before":
        rows = await fetch_all(ORDERS_NEWER_THAN, user_id, position.order_id, limit + 1, read_only=True)
        orders = _orders_of(rows)
        # Read upwards from the position: any order beyond the page is the newest one.
        more, orders = len(orders) > limit, orders[-limit:]
        if not orders:
            return OrderListing([], OrderPosition("after", position.order_id + 1), None)
        return OrderListing(
            orders,
            OrderPosition("after", orders[-1].id),
            OrderPosition("before", orders[0].id) if more else None,
        )
    older_than = _ABOVE_EVERY_ID if position is None else position.order_id
    orders = _orders_of(await fetch_all(ORDERS_OLDER_THAN, user_id, older_than, limit + 1, read_only=True))
    more, orders = len(orders) > limit, orders[:limit]
    if position is None:
        return OrderListing(orders, OrderPosition("after", orders[-1].id) if more else None, None)
    if not orders:
        # Past the oldest order: lead back the way the reader came, to the page holding the
        # order at the position (orders are never deleted, but a cursor may be for any id).
        return OrderListing([], None, OrderPosition("before", position.order_id - 1))
    return OrderListing(
        orders,
        OrderPosition("after", orders[-1].id) if more else None,
        OrderPosition("before", orders[0].id),
    )


async def cancel_order(order_id: int, owner_id: int | None) -> Order:
    """Cancel a placed order of ``owner_id`` (any order when None) and return its stock, once.

    NotFoundError as :func:`get_order`; ConflictError if it is already cancelled.
    """
    async with transaction() as connection:
        orders = _orders_of(await connection.fetch(CANCEL_ORDER, order_id, owner_id))
        if not orders:
            status = await connection.fetchval(ORDER_STATUS, order_id, owner_id)
            if status is None:
                raise NotFoundError(f"Order {order_id} does not exist.")
            raise ConflictError(f"Order {order_id} is already {status}.")
        order = orders[0]
        returned = sorted((item.book_id, item.quantity) for item in order.items if item.book_id is not None)
        if returned:
            book_ids, quantities = [book_id for book_id, _ in returned], [quantity for _, quantity in returned]
            await connection.fetch(LOCK_BOOKS, book_ids)
            await connection.execute(RESTOCK_BOOKS, book_ids, quantities)
    return order
