"""The floor: the thinnest server that does the benchmark scenarios' work, to compare the app against.

A Granian RSGI app with one asyncpg pool per worker and msgspec, answering the scenarios' paths
with the SQL the app runs (``bookstore/books/queries.py``, ``bookstore/orders/queries.py``; the
runner checks, in PostgreSQL's statement log, that both send the same statements):

- ``GET /api/v1/books/{id}``: the SELECT of one book; 404 without a row.
- ``GET /api/v1/books[?limit=][&offset=]``: the capped count and the first page of the default
  listing (newest first) of the ``list_books`` scenario.
- ``GET /api/v1/books?cursor=[&limit=]``: the same for a page after a cursor (``deep_cursor``).
  The floor reads the position from the cursor's payload and skips what the app checks (its
  HMAC tag, expiry and listing fingerprint): a few microseconds of CPU it does not claim to measure.
- ``GET /api/v1/books?q=[&limit=][&offset=]``: a text search (``search_books``): the page within the
  newest 2,000 books, and only when that is not a full page, the page of all matches; no count.
- ``GET /api/v1/books?min_price=&max_price=&sort=-price[&limit=][&offset=]``: the capped count and
  the page of the ``filter_books`` scenario (price window, most expensive first).
- ``POST /api/v1/books``: the INSERT ... RETURNING; 201 with the book.
- ``PATCH /api/v1/books/{id}`` with ``{"price": ...}``: the UPDATE ... RETURNING of an admin's
  unconditional change.
- ``POST /api/v1/orders``: in one transaction, the app's own statements: the books locked in id
  order, then the one statement that takes the stock and inserts the order and its lines; 201 with
  the order, or 404/409 (rolled back) when a book is unknown or short of stock. No
  ``Idempotency-Key`` (the scenario sends none). The order's request and response bodies are the
  app's own structs (``bookstore/orders/schemas.py``), imported with the statements.
- ``GET /api/v1/books/{id}/cover[?v=]``: the app's own SELECT of the cover's columns
  (``bookstore/covers/queries.py``), then the stored file at the app's storage path, sent by
  Granian (RSGI ``response_file``) with the row's ``Content-Type`` and ``Content-Length`` (without
  it Granian answers chunked) and the app's ``ETag``, ``Cache-Control`` and ``nosniff``; 404 when
  the book or its cover does not exist. Full size only, no ``If-None-Match`` (the scenario sends
  neither a size nor a validator).

No framework, no ORM, no authentication (so no session query on writes, and no rate limiter), no
validation beyond what msgspec decoding gives, no ``Link``/``RateLimit-*`` headers. Like the app,
the pool skips asyncpg's reset query on release (the floor keeps no session state), and a page
carries ``next_cursor``/``prev_cursor`` signed with bookstore's own ``CursorSigner`` (over a
fingerprint of the query string rather than of parsed filters).

Serve with ``python -m granian --interface rsgi --workers 2 --host 127.0.0.1 --port 8001
benchmarks.floor:app`` (from the repository root). Environment: ``DATABASE_URL`` (required),
``BOOKSTORE_DB_POOL_MIN_SIZE``/``_MAX_SIZE`` (default 2/10, as the app),
``BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS`` (default 30), ``BOOKSTORE_SECRET_KEY`` and
``BOOKSTORE_PAGE_CURSOR_TTL_SECONDS`` (the cursors it issues; default a random key, one day),
``FLOOR_USER_ID`` (the user the floor acts for, having no authentication: ``created_by`` of the
books it creates and owner of the orders it places; default none, which refuses orders), and
the app's settings of where covers are stored (``BOOKSTORE_COVERS_DIR``, else
``<BOOKSTORE_DATA_DIR>/covers``), read through bookstore's own settings.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import secrets
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

import asyncpg
import msgspec

from bookstore.core.cursors import CursorSigner
from bookstore.core.storage import LocalFileStorage
from bookstore.covers.queries import GET_COVER
from bookstore.covers.schemas import cover_url, cover_version
from bookstore.orders.queries import LOCK_BOOKS, PLACE_ORDER
from bookstore.orders.schemas import ORDERS_PATH, Order, OrderCreate, OrderItem
from bookstore.settings import load_settings

if TYPE_CHECKING:
    from granian._granian import RSGIHTTPProtocol as HTTPProtocol  # what granian.rsgi.HTTPProtocol is
    from granian.rsgi import Scope

__all__ = ["app"]

BOOKS = "/api/v1/books"
_BOOK_PREFIX = BOOKS + "/"
_COVER_SUFFIX = "/cover"
# The cover response's headers, as bookstore/covers/controller.py sends them.
_CACHE_FOREVER = "public, max-age=31536000, immutable"
_REVALIDATE = "public, no-cache"
_NOSNIFF = ("x-content-type-options", "nosniff")

# The statements of bookstore/books/queries.py for these requests, verbatim: every column of the
# book table (in its order: the row positions below depend on it), counts capped at
# TOTAL_COUNT_LIMIT + 1, pages of limit + 1 rows, a search window of SEARCH_WINDOW (2,000) rows.
_TOTAL_COUNT_LIMIT = 1000  # bookstore.books.schemas.TOTAL_COUNT_LIMIT
SQL_GET = (
    "SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size "
    "FROM book WHERE id = $1"
)
SQL_COUNT_ALL = "SELECT count(*) FROM (SELECT 1 FROM book LIMIT 1001) AS capped"
SQL_PAGE_NEWEST = (
    "SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size "
    "FROM book ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
)
SQL_PAGE_NEWEST_AFTER = (
    "SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size "
    "FROM book WHERE (created_at, id) < ($1, $2) ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
)
SQL_SEARCH_WINDOW = (
    "SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size "
    "FROM (SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size, "
    "search_vector FROM book ORDER BY created_at DESC, id DESC LIMIT 2000) AS head "
    "WHERE search_vector @@ to_tsquery('simple', $1) ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
)
SQL_SEARCH_ALL = (
    "SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size "
    "FROM (SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size "
    "FROM book WHERE search_vector @@ to_tsquery('simple', $1) OFFSET 0) AS matches "
    "ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
)
SQL_COUNT_PRICE = "SELECT count(*) FROM (SELECT 1 FROM book WHERE price >= $1 AND price <= $2 LIMIT 1001) AS capped"
SQL_PAGE_PRICE = (
    "SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size "
    "FROM book WHERE price >= $1 AND price <= $2 ORDER BY price DESC, id DESC LIMIT $3 OFFSET $4"
)
SQL_INSERT = (
    "INSERT INTO book (title, author, publish_date, isbn, price, stock, created_by) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "RETURNING id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size"
)
SQL_UPDATE_PRICE = (
    "UPDATE book SET price = $1 WHERE id = $2 "
    "RETURNING id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, stock, version, "
    "cover_key, cover_content_type, cover_width, cover_height, cover_size, cover_thumbnail_key, cover_thumbnail_size"
)
_PRICE, _CREATED_AT = 5, 6  # positions of the sort keys in a row
_VERSION, _COVER_KEY = 10, 11  # positions of the ETag's version and the cover's storage key


class Book(msgspec.Struct):
    """bookstore.books.schemas.Book: the same fields in the same order, so the same JSON."""

    id: int
    title: str
    author: str
    publish_date: date
    isbn: str
    price: Decimal
    stock: int
    created_at: datetime
    updated_at: datetime
    created_by: int | None
    cover_url: str | None


class BookPage(msgspec.Struct):
    items: list[Book]
    total: int | None
    limit: int
    offset: int
    total_exact: bool
    next_cursor: str | None
    prev_cursor: str | None


class BookCreate(msgspec.Struct):
    title: str
    author: str
    publish_date: date
    isbn: str
    price: Decimal
    stock: int = 0


class PriceChange(msgspec.Struct):
    price: Decimal


_encode = msgspec.json.Encoder().encode
_decode_create = msgspec.json.Decoder(BookCreate).decode
_decode_price = msgspec.json.Decoder(PriceChange).decode
_decode_order = msgspec.json.Decoder(OrderCreate).decode
# A cursor of the default listing, as bookstore.books.filters.book_cursor lays it out:
# [expiry, listing fingerprint, direction ("a"fter / "b"efore), created_at, id].
_decode_cursor = msgspec.json.Decoder(tuple[int, str, Literal["a", "b"], datetime, int]).decode
_WORD = re.compile(r"\w+")
_PAGING = frozenset({"limit", "offset", "cursor"})
_JSON = ("content-type", "application/json")
_TEXT = [("content-type", "text/plain; charset=utf-8")]


def _book(row: asyncpg.Record) -> Book:
    cover_key = row[_COVER_KEY]
    cover = None if cover_key is None else cover_url(row[0], cover_key)
    return Book(row[0], row[1], row[2], row[3], row[4], row[5], row[9], row[6], row[7], row[8], cover)


def _json(proto: HTTPProtocol, status: int, body: Any, version: int | None = None, location: str | None = None) -> None:
    headers = [_JSON]
    if version is not None:
        headers.append(("etag", f'"{version}"'))
    if location is not None:
        headers.append(("location", location))
    proto.response_bytes(status, headers, _encode(body))


def _text(proto: HTTPProtocol, status: int, text: str) -> None:
    proto.response_bytes(status, _TEXT, text.encode())


class OrderRefusedError(Exception):
    """An order that cannot be placed (unknown book, not enough stock); raised inside its
    transaction so that it rolls back, as the app's does."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _search_query(text: str) -> str:
    """bookstore.books.queries.search_query: every word, the last one also as a prefix."""
    words = list(dict.fromkeys(_WORD.findall(text.lower())))
    if not words:
        raise ValueError("q must contain at least one letter or digit")
    return " & ".join([*words[:-1], f"{words[-1]}:*"])


def _position_after(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a ``next`` cursor of the default listing points after; the HMAC tag,
    expiry and fingerprint are not checked (the app does check them)."""
    payload = cursor.partition(".")[0]
    _expires, _fingerprint, direction, created_at, book_id = _decode_cursor(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    if direction != "a":
        raise ValueError("the floor serves only next cursors")
    return created_at, book_id


async def _keep_session_state(connection: asyncpg.Connection) -> None:
    """Pool reset hook that skips asyncpg's reset query, as the app's pool does."""


class Floor:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.user_id = int(os.environ["FLOOR_USER_ID"]) if os.environ.get("FLOOR_USER_ID") else None
        self.covers = LocalFileStorage(load_settings().covers_path)
        self.cursors = CursorSigner(
            os.environ.get("BOOKSTORE_SECRET_KEY") or secrets.token_hex(32),
            int(os.environ.get("BOOKSTORE_PAGE_CURSOR_TTL_SECONDS") or 24 * 3600),
        )

    # Granian calls these in every worker, before it serves and after it stops.
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = loop.run_until_complete(
            asyncpg.create_pool(
                os.environ["DATABASE_URL"],
                min_size=int(os.environ.get("BOOKSTORE_DB_POOL_MIN_SIZE") or 2),
                max_size=int(os.environ.get("BOOKSTORE_DB_POOL_MAX_SIZE") or 10),
                command_timeout=float(os.environ.get("BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS") or 30),
                reset=_keep_session_state,
            )
        )

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.pool is not None:
            loop.run_until_complete(self.pool.close())

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        assert self.pool is not None
        path, method = scope.path, scope.method
        try:
            if path == BOOKS:
                if method == "GET":
                    return await self.list_books(scope, proto, self.pool)
                if method == "POST":
                    return await self.create_book(proto, self.pool)
            elif path.startswith(_BOOK_PREFIX) and path.endswith(_COVER_SUFFIX) and method == "GET":
                return await self.get_cover(scope, proto, self.pool, int(path[len(_BOOK_PREFIX) : -len(_COVER_SUFFIX)]))
            elif path.startswith(_BOOK_PREFIX):
                book_id = int(path[len(_BOOK_PREFIX) :])
                if method == "GET":
                    return await self.get_book(proto, self.pool, book_id)
                if method == "PATCH":
                    return await self.update_price(proto, self.pool, book_id)
            elif path == ORDERS_PATH and method == "POST":
                return await self.create_order(proto, self.pool)
            elif path == "/health":
                return _text(proto, 200, "ok")
            return _text(proto, 404, "not found")
        except (ValueError, KeyError, msgspec.DecodeError) as error:  # msgspec.ValidationError is a ValueError
            return _text(proto, 400, str(error))
        except asyncpg.UniqueViolationError as error:
            return _text(proto, 409, str(error))
        except OrderRefusedError as refusal:
            return _text(proto, refusal.status, str(refusal))

    async def get_book(self, proto: HTTPProtocol, pool: asyncpg.Pool, book_id: int) -> None:
        row = await pool.fetchrow(SQL_GET, book_id)
        if row is None:
            return _text(proto, 404, "not found")
        _json(proto, 200, _book(row), row[_VERSION])

    async def get_cover(self, scope: Scope, proto: HTTPProtocol, pool: asyncpg.Pool, book_id: int) -> None:
        query = dict(parse_qsl(scope.query_string))
        if query.keys() - {"v"}:
            raise ValueError("the floor serves only full-size covers, with or without v")
        row = await pool.fetchrow(GET_COVER, book_id)
        if row is None or row["cover_key"] is None:
            return _text(proto, 404, "not found")
        key = row["cover_key"]
        headers = [
            ("content-type", row["cover_content_type"]),
            ("content-length", str(row["cover_size"])),
            ("etag", f'"{key.partition(".")[0]}"'),
            ("cache-control", _CACHE_FOREVER if query.get("v") == cover_version(key) else _REVALIDATE),
            _NOSNIFF,
        ]
        proto.response_file(200, headers, str(self.covers.path(key)))

    async def list_books(self, scope: Scope, proto: HTTPProtocol, pool: asyncpg.Pool) -> None:
        query = dict(parse_qsl(scope.query_string))
        limit, offset = int(query.get("limit", 20)), int(query.get("offset", 0))
        filters = {key: value for key, value in query.items() if key not in _PAGING}
        after = _position_after(query["cursor"]) if "cursor" in query else None
        total: int | None = None
        async with pool.acquire() as connection:
            if not filters:
                total = await connection.fetchval(SQL_COUNT_ALL)
                if after is None:
                    rows = await connection.fetch(SQL_PAGE_NEWEST, limit + 1, offset)
                else:
                    rows = await connection.fetch(SQL_PAGE_NEWEST_AFTER, *after, limit + 1, offset)
                key = _CREATED_AT
            elif filters.keys() == {"q"} and after is None:
                tsquery = _search_query(filters["q"])
                rows = await connection.fetch(SQL_SEARCH_WINDOW, tsquery, limit + 1, offset)
                if len(rows) <= limit:
                    rows = await connection.fetch(SQL_SEARCH_ALL, tsquery, limit + 1, offset)
                key = _CREATED_AT
            elif filters.keys() == {"min_price", "max_price", "sort"} and filters["sort"] == "-price" and after is None:
                low, high = Decimal(filters["min_price"]), Decimal(filters["max_price"])
                total = await connection.fetchval(SQL_COUNT_PRICE, low, high)
                rows = await connection.fetch(SQL_PAGE_PRICE, low, high, limit + 1, offset)
                key = _PRICE
            else:
                raise ValueError("the floor serves only the scenarios' listings (none, q, or a price window)")
        _json(proto, 200, self.page(rows, key, total, limit, offset, filters, paged=after is not None or offset > 0))

    def page(
        self,
        rows: list[asyncpg.Record],
        key: int,
        total: int | None,
        limit: int,
        offset: int,
        filters: dict[str, str],
        *,
        paged: bool,
    ) -> BookPage:
        """The page of ``limit + 1`` rows read (the last one only telling that more follow), with
        the cursors of the neighbouring pages, as bookstore.books.queries.list_books builds it."""
        more, rows = len(rows) > limit, rows[:limit]
        next_cursor = prev_cursor = None
        if rows:
            fingerprint = hashlib.blake2b(_encode(filters), digest_size=12).hexdigest()
            if more:
                next_cursor = self.cursors.sign([fingerprint, "a", rows[-1][key], rows[-1][0]], listing="books")
            if paged:
                prev_cursor = self.cursors.sign([fingerprint, "b", rows[0][key], rows[0][0]], listing="books")
        counted = total is not None and total <= _TOTAL_COUNT_LIMIT
        capped = None if total is None else min(total, _TOTAL_COUNT_LIMIT)
        return BookPage([_book(row) for row in rows], capped, limit, offset, counted, next_cursor, prev_cursor)

    async def create_book(self, proto: HTTPProtocol, pool: asyncpg.Pool) -> None:
        data = _decode_create(await proto())
        row = await pool.fetchrow(
            SQL_INSERT, data.title, data.author, data.publish_date, data.isbn, data.price, data.stock, self.user_id
        )
        _json(proto, 201, _book(row), row[_VERSION], f"{BOOKS}/{row[0]}")

    async def update_price(self, proto: HTTPProtocol, pool: asyncpg.Pool, book_id: int) -> None:
        change = _decode_price(await proto())
        row = await pool.fetchrow(SQL_UPDATE_PRICE, change.price, book_id)
        if row is None:
            return _text(proto, 404, "not found")
        _json(proto, 200, _book(row), row[_VERSION])

    async def create_order(self, proto: HTTPProtocol, pool: asyncpg.Pool) -> None:
        """bookstore.orders.queries.place_order without an Idempotency-Key."""
        if self.user_id is None:
            raise ValueError("FLOOR_USER_ID is not set: the floor has no user to place orders for")
        lines = sorted(_decode_order(await proto()).items, key=lambda line: line.book_id)
        book_ids = [line.book_id for line in lines]
        async with pool.acquire() as connection, connection.transaction():
            books = {row["id"]: row for row in await connection.fetch(LOCK_BOOKS, book_ids)}
            if unknown := [book_id for book_id in book_ids if book_id not in books]:
                raise OrderRefusedError(404, f"no book has the id {unknown}")
            if short := [line.book_id for line in lines if books[line.book_id]["stock"] < line.quantity]:
                raise OrderRefusedError(409, f"not enough stock of the books {short}")
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
                self.user_id,
                book_ids,
                [item.quantity for item in items],
                [item.title for item in items],
                [item.unit_price for item in items],
                total,
            )
        order = Order(placed["id"], "placed", items, total, placed["created_at"], None)
        _json(proto, 201, order, location=f"{ORDERS_PATH}/{placed['id']}")


app = Floor()
