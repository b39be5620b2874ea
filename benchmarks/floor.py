"""The floor: the thinnest server that does the benchmark scenarios' work, to compare the app against.

A Granian RSGI app with one asyncpg pool per worker and msgspec, answering the scenarios' paths
with the SQL the app runs (``bookstore/books/queries.py``; the runner checks, in PostgreSQL's
statement log, that both send the same statements):

- ``GET /api/v1/books/{id}``: the SELECT of one book; 404 without a row.
- ``GET /api/v1/books?min_price=&max_price=&sort=-price[&limit=][&offset=]``: the count and the
  page query of the ``list_books`` scenario (price window, most expensive first).
- ``POST /api/v1/books``: the INSERT ... RETURNING; 201 with the book.
- ``PATCH /api/v1/books/{id}`` with ``{"price": ...}``: the UPDATE ... RETURNING of an admin's
  unconditional change.

No framework, no ORM, no authentication (so no session query on writes, and no rate limiter), no
validation beyond what msgspec decoding gives, no ``Link``/``RateLimit-*`` headers. Like the app,
the pool skips asyncpg's reset query on release (the floor keeps no session state).

Serve with ``python -m granian --interface rsgi --workers 2 --host 127.0.0.1 --port 8001
benchmarks.floor:app`` (from the repository root). Environment: ``DATABASE_URL`` (required),
``BOOKSTORE_DB_POOL_MIN_SIZE``/``_MAX_SIZE`` (default 2/10, as the app),
``BOOKSTORE_DB_COMMAND_TIMEOUT_SECONDS`` (default 30), ``FLOOR_CREATOR_ID`` (user id written as
``created_by`` of created books; default none).
"""

from __future__ import annotations

import asyncio
import os
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import asyncpg
import msgspec

if TYPE_CHECKING:
    from granian._granian import RSGIHTTPProtocol as HTTPProtocol  # what granian.rsgi.HTTPProtocol is
    from granian.rsgi import Scope

__all__ = ["app"]

BOOKS = "/api/v1/books"
_BOOK_PREFIX = BOOKS + "/"

# The statements of bookstore/books/queries.py for these requests, verbatim.
SQL_GET = (
    "SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, version "
    "FROM book WHERE id = $1"
)
SQL_COUNT = "SELECT count(*) FROM book WHERE price >= $1 AND price <= $2"
SQL_PAGE = (
    "SELECT id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, version "
    "FROM book WHERE price >= $1 AND price <= $2 ORDER BY price DESC, id DESC LIMIT $3 OFFSET $4"
)
SQL_INSERT = (
    "INSERT INTO book (title, author, publish_date, isbn, price, created_by) VALUES ($1, $2, $3, $4, $5, $6) "
    "RETURNING id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, version"
)
SQL_UPDATE_PRICE = (
    "UPDATE book SET price = $1, version = version + 1, updated_at = now() WHERE id = $2 "
    "RETURNING id, title, author, publish_date, isbn, price, created_at, updated_at, created_by, version"
)


class Book(msgspec.Struct):
    id: int
    title: str
    author: str
    publish_date: date
    isbn: str
    price: Decimal
    created_at: datetime
    updated_at: datetime
    created_by: int | None


class BookPage(msgspec.Struct):
    items: list[Book]
    total: int
    limit: int
    offset: int


class BookCreate(msgspec.Struct):
    title: str
    author: str
    publish_date: date
    isbn: str
    price: Decimal


class PriceChange(msgspec.Struct):
    price: Decimal


_encode = msgspec.json.Encoder().encode
_decode_create = msgspec.json.Decoder(BookCreate).decode
_decode_price = msgspec.json.Decoder(PriceChange).decode
_JSON = ("content-type", "application/json")
_TEXT = [("content-type", "text/plain; charset=utf-8")]


def _book(row: asyncpg.Record) -> Book:
    return Book(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])


def _json(proto: HTTPProtocol, status: int, body: Any, version: int | None = None, location: str | None = None) -> None:
    headers = [_JSON]
    if version is not None:
        headers.append(("etag", f'"{version}"'))
    if location is not None:
        headers.append(("location", location))
    proto.response_bytes(status, headers, _encode(body))


def _text(proto: HTTPProtocol, status: int, text: str) -> None:
    proto.response_bytes(status, _TEXT, text.encode())


async def _keep_session_state(connection: asyncpg.Connection) -> None:
    """Pool reset hook that skips asyncpg's reset query, as the app's pool does."""


class Floor:
    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None
        self.creator_id = int(os.environ["FLOOR_CREATOR_ID"]) if os.environ.get("FLOOR_CREATOR_ID") else None

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
            elif path.startswith(_BOOK_PREFIX):
                book_id = int(path[len(_BOOK_PREFIX) :])
                if method == "GET":
                    return await self.get_book(proto, self.pool, book_id)
                if method == "PATCH":
                    return await self.update_price(proto, self.pool, book_id)
            elif path == "/health":
                return _text(proto, 200, "ok")
            return _text(proto, 404, "not found")
        except (ValueError, KeyError, msgspec.DecodeError) as error:  # msgspec.ValidationError is a ValueError
            return _text(proto, 400, str(error))
        except asyncpg.UniqueViolationError as error:
            return _text(proto, 409, str(error))

    async def get_book(self, proto: HTTPProtocol, pool: asyncpg.Pool, book_id: int) -> None:
        row = await pool.fetchrow(SQL_GET, book_id)
        if row is None:
            return _text(proto, 404, "not found")
        _json(proto, 200, _book(row), row[9])

    async def list_books(self, scope: Scope, proto: HTTPProtocol, pool: asyncpg.Pool) -> None:
        query = dict(parse_qsl(scope.query_string))
        if query.get("sort") != "-price":
            raise ValueError("the floor serves only sort=-price with min_price and max_price")
        low, high = Decimal(query["min_price"]), Decimal(query["max_price"])
        limit, offset = int(query.get("limit", 20)), int(query.get("offset", 0))
        async with pool.acquire() as connection:
            total: int = await connection.fetchval(SQL_COUNT, low, high)
            rows = await connection.fetch(SQL_PAGE, low, high, limit, offset) if total > offset else []
        _json(proto, 200, BookPage([_book(row) for row in rows], total, limit, offset))

    async def create_book(self, proto: HTTPProtocol, pool: asyncpg.Pool) -> None:
        data = _decode_create(await proto())
        row = await pool.fetchrow(
            SQL_INSERT, data.title, data.author, data.publish_date, data.isbn, data.price, self.creator_id
        )
        _json(proto, 201, _book(row), row[9], f"{BOOKS}/{row[0]}")

    async def update_price(self, proto: HTTPProtocol, pool: asyncpg.Pool, book_id: int) -> None:
        change = _decode_price(await proto())
        row = await pool.fetchrow(SQL_UPDATE_PRICE, change.price, book_id)
        if row is None:
            return _text(proto, 404, "not found")
        _json(proto, 200, _book(row), row[9])


app = Floor()
