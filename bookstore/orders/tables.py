"""The order tables: ``book_order`` ("order" is reserved in SQL), its ``order_item`` lines, and the
``idempotency_key`` responses stored for retried requests.

Constraints are declared here, under their names in the database, so that Piccolo's migrations
know them; the one index the ORM cannot declare (a user's orders by id) has a migration of its
own. Column attributes are named as their database columns, as the order path's SQL
(``queries.py``) spells them.
"""

from __future__ import annotations

from piccolo.columns import (
    BigSerial,
    Bytea,
    ForeignKey,
    Integer,
    Numeric,
    OnDelete,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.constraints import Check, Unique
from piccolo.table import Table

from bookstore.accounts.tables import UserTable
from bookstore.books.tables import PRICE_DIGITS, TITLE_MAX_LENGTH, BookTable

__all__ = [
    "IDEMPOTENCY_KEY_MAX_LENGTH",
    "STATUSES",
    "TOTAL_DIGITS",
    "IdempotencyKeyTable",
    "OrderItemTable",
    "OrderTable",
]

STATUSES = ("placed", "cancelled")
# numeric(16, 2): the largest order, 50 lines of 100 copies at the highest price (9,999,999,999.99),
# totals 49,999,999,999,950.00, which needs 14 digits before the point.
TOTAL_DIGITS = (16, 2)
IDEMPOTENCY_KEY_MAX_LENGTH = 255


class OrderTable(Table, tablename="book_order"):
    id = BigSerial(primary_key=True)
    # SET NULL: orders are the shop's records and outlive a deleted account, no longer linked to it
    # (only admins see them then).
    user_id = ForeignKey(references=UserTable, on_delete=OnDelete.set_null, null=True)
    status = Varchar(length=16, default="placed")
    total = Numeric(digits=TOTAL_DIGITS)
    created_at = Timestamptz(default=TimestamptzNow())
    cancelled_at = Timestamptz(null=True, default=None)

    book_order_status_known = Check("status IN ('placed', 'cancelled')")
    book_order_total_non_negative = Check(total >= 0)
    book_order_cancelled_at_iff_cancelled = Check("(status = 'cancelled') = (cancelled_at IS NOT NULL)")


class OrderItemTable(Table, tablename="order_item"):
    id = BigSerial(primary_key=True)
    order_id = ForeignKey(references=OrderTable, on_delete=OnDelete.cascade, null=False)
    # SET NULL: the order's history outlives a book deleted from the catalogue (title and price
    # are copies taken when the order was placed).
    # Indexed: deleting a book sets its lines' book_id to NULL, which would otherwise scan every line.
    book_id = ForeignKey(references=BookTable, on_delete=OnDelete.set_null, null=True, index=True)
    title = Varchar(length=TITLE_MAX_LENGTH)
    quantity = Integer()
    unit_price = Numeric(digits=PRICE_DIGITS)

    order_item_quantity_range = Check((quantity >= 1) & (quantity <= 100))
    order_item_unit_price_non_negative = Check(unit_price >= 0)
    # One line per book (a book twice in one order is refused); also the index of an order's lines.
    order_item_order_id_book_id_key = Unique([order_id, book_id])


class IdempotencyKeyTable(Table, tablename="idempotency_key"):
    """The response a request with an ``Idempotency-Key`` got, replayed to its retries."""

    id = BigSerial(primary_key=True)
    user_id = ForeignKey(references=UserTable, on_delete=OnDelete.cascade, null=False)
    key = Varchar(length=IDEMPOTENCY_KEY_MAX_LENGTH)
    # SHA-256 (hex) of the request's canonical body: the same key with another body is refused.
    request_hash = Varchar(length=64)
    # Null only inside the transaction that claimed the key; committed rows always hold a response.
    status_code = Integer(null=True, default=None)
    response = Bytea(null=True, default=None)
    location = Varchar(length=2048, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()

    # Keys are per user: the same key from two users is two keys.
    idempotency_key_user_id_key_key = Unique([user_id, key])
