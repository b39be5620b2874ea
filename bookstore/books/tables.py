"""The ``book`` table.

Constraints the ORM could not declare when the table was created (price and version checks) and the indexes behind every
filter and sort of ``GET /books`` live in the migration that creates it.
"""

from __future__ import annotations

from piccolo.columns import (
    BigSerial,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    OnDelete,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.constraints import Check
from piccolo.table import Table

from bookstore.accounts.tables import UserTable

__all__ = ["BookTable"]

TITLE_MAX_LENGTH = 300
AUTHOR_MAX_LENGTH = 200
# numeric(12, 2): up to 9,999,999,999.99
PRICE_DIGITS = (12, 2)
# A storage key: 64 hex digits of SHA-256, a dot and an extension.
COVER_KEY_MAX_LENGTH = 80


class BookTable(Table, tablename="book"):
    id = BigSerial(primary_key=True)
    title = Varchar(length=TITLE_MAX_LENGTH)
    author = Varchar(length=AUTHOR_MAX_LENGTH)
    publish_date = Date()
    isbn = Varchar(length=13, unique=True)
    price = Numeric(digits=PRICE_DIGITS)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    # A book outlives the account that added it; afterwards only admins may change it.
    created_by = ForeignKey(references=UserTable, on_delete=OnDelete.set_null, null=True)
    # Copies the shop can sell.
    stock = Integer(default=0)
    # The backstop behind the orders' conditional decrements: a bug cannot sell copies that do not exist.
    book_stock_non_negative = Check(stock >= 0)
    # Optimistic concurrency, exposed as the ETag: the book_bump_version trigger bumps it on every
    # change, whoever writes (API, orders, admin panel, SQL).
    version = Integer(default=1)
    # The cover image, all null without one: storage keys (content hashes) of the stored image and
    # its thumbnail, and what GET /cover answers with, so serving it never opens the image.
    cover_key = Varchar(length=COVER_KEY_MAX_LENGTH, null=True, default=None)
    cover_content_type = Varchar(length=32, null=True, default=None)
    cover_width = Integer(null=True, default=None)
    cover_height = Integer(null=True, default=None)
    cover_size = Integer(null=True, default=None)
    cover_thumbnail_key = Varchar(length=COVER_KEY_MAX_LENGTH, null=True, default=None)
    cover_thumbnail_size = Integer(null=True, default=None)
