"""Reads and writes of the ``book`` table.

Writes are single conditional statements: ownership and the expected version (``If-Match``)
are checked in the ``UPDATE``/``DELETE`` itself, never read first and written later, so two
concurrent writers cannot both succeed against the same version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from piccolo.columns.combination import WhereRaw
from piccolo.query.methods.select import Select

from bookstore.books.schemas import Book, BookCreate, SortField, to_book
from bookstore.books.tables import BookTable
from bookstore.core.database import is_unique_violation
from bookstore.core.errors import ConflictError, NotFoundError, PermissionDeniedError, PreconditionFailedError
from bookstore.core.http import ANY_VERSION

__all__ = [
    "Actor",
    "BookFilters",
    "book_page_query",
    "create_book",
    "delete_book",
    "get_book",
    "list_books",
    "search_query",
    "update_book",
]

_COLUMNS = (
    BookTable.id,
    BookTable.title,
    BookTable.author,
    BookTable.publish_date,
    BookTable.isbn,
    BookTable.price,
    BookTable.created_at,
    BookTable.updated_at,
    BookTable.created_by,
    BookTable.version,
)
_SORT_COLUMNS = {
    "title": BookTable.title,
    "author": BookTable.author,
    "publish_date": BookTable.publish_date,
    "price": BookTable.price,
    "created_at": BookTable.created_at,
}
_WORD = re.compile(r"\w+")
# Must match the expression of the GIN index book_search_idx exactly, or the index is not used.
_SEARCH_SQL = "to_tsvector('simple', title || ' ' || author) @@ to_tsquery('simple', {})"
_DUPLICATE_ISBN = "A book with this ISBN already exists."


@dataclass(frozen=True)
class Actor:
    """Who is writing: creators may change their own books, admins any book."""

    user_id: int
    is_admin: bool


@dataclass(frozen=True)
class BookFilters:
    limit: int = 20
    offset: int = 0
    author: str | None = None
    q: str | None = None
    isbn: str | None = None
    published_after: date | None = None
    published_before: date | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    sort: SortField = "-created_at"


def search_query(text: str) -> str | None:
    """A prefix-matching ``tsquery`` for every word of ``text`` (all must match), or None.

    Only word characters reach the query, so no user input can inject tsquery operators.
    """
    words = _WORD.findall(text.lower())
    return " & ".join(f"{word}:*" for word in words) or None


def _where(filters: BookFilters) -> list[Any]:
    conditions: list[Any] = []
    if filters.author is not None:
        conditions.append(WhereRaw("lower(author) = lower({})", filters.author))
    if filters.q is not None:
        conditions.append(WhereRaw(_SEARCH_SQL, search_query(filters.q) or ""))
    if filters.isbn is not None:
        conditions.append(BookTable.isbn == filters.isbn)
    if filters.published_after is not None:
        conditions.append(BookTable.publish_date >= filters.published_after)
    if filters.published_before is not None:
        conditions.append(BookTable.publish_date <= filters.published_before)
    if filters.min_price is not None:
        conditions.append(BookTable.price >= filters.min_price)
    if filters.max_price is not None:
        conditions.append(BookTable.price <= filters.max_price)
    return conditions


def book_page_query(filters: BookFilters) -> Select[BookTable]:
    """The SELECT of one page of books (public so tests can EXPLAIN it)."""
    ascending = not filters.sort.startswith("-")
    sort_column = _SORT_COLUMNS[filters.sort.lstrip("-")]
    return (
        BookTable.select(*_COLUMNS)
        .where(*_where(filters))
        .order_by(sort_column, BookTable.id, ascending=ascending)
        .limit(filters.limit)
        .offset(filters.offset)
    )


async def list_books(filters: BookFilters) -> tuple[list[Book], int]:
    """One page of books matching ``filters`` and the number of all matches."""
    total = await BookTable.count().where(*_where(filters))
    return [to_book(row) for row in await book_page_query(filters)], total


async def get_book(book_id: int) -> tuple[Book, int]:
    """The book and its version, or NotFoundError."""
    row = await BookTable.select(*_COLUMNS).where(BookTable.id == book_id).first()
    if row is None:
        raise NotFoundError(f"Book {book_id} does not exist.")
    return to_book(row), row["version"]


async def create_book(data: BookCreate, creator_id: int) -> tuple[Book, int]:
    try:
        rows = await BookTable.insert(
            BookTable(
                title=data.title,
                author=data.author,
                publish_date=data.publish_date,
                isbn=data.isbn,
                price=data.price,
                created_by=creator_id,
            )
        ).returning(*_COLUMNS)
    except asyncpg.UniqueViolationError as error:
        if is_unique_violation(error, "book_isbn_key"):
            raise ConflictError(_DUPLICATE_ISBN) from None
        raise
    return to_book(rows[0]), rows[0]["version"]


def _guarded(book_id: int, actor: Actor, expected_versions: list[int] | None) -> Any:
    """The WHERE clause of a write: the book, owned by the actor (unless admin), at a version."""
    condition: Any = BookTable.id == book_id
    if not actor.is_admin:
        condition &= BookTable.created_by == actor.user_id
    if expected_versions is not None and ANY_VERSION not in expected_versions:
        condition &= BookTable.version.is_in(expected_versions) if expected_versions else WhereRaw("false")
    return condition


async def _explain_refusal(book_id: int, actor: Actor) -> Exception:
    """Why a guarded write touched no row: missing book, not the actor's, or a stale version."""
    row = await BookTable.select(BookTable.created_by).where(BookTable.id == book_id).first()
    if row is None:
        return NotFoundError(f"Book {book_id} does not exist.")
    if not actor.is_admin and row["created_by"] != actor.user_id:
        return PermissionDeniedError("Only the user who added this book or an admin may change it.")
    return PreconditionFailedError("The book has changed since the If-Match version; fetch it again.")


async def update_book(
    book_id: int, changes: dict[str, Any], actor: Actor, expected_versions: list[int] | None
) -> tuple[Book, int]:
    """Apply ``changes`` (field name -> value) if the guard holds; bump version and updated_at."""
    values: dict[Any, Any] = {BookTable._meta.get_column_by_name(name): value for name, value in changes.items()}
    values[BookTable.version] = BookTable.version + 1
    values[BookTable.updated_at] = datetime.now(UTC)
    try:
        rows = await BookTable.update(values).where(_guarded(book_id, actor, expected_versions)).returning(*_COLUMNS)
    except asyncpg.UniqueViolationError as error:
        if is_unique_violation(error, "book_isbn_key"):
            raise ConflictError(_DUPLICATE_ISBN) from None
        raise
    if not rows:
        raise await _explain_refusal(book_id, actor)
    return to_book(rows[0]), rows[0]["version"]


async def delete_book(book_id: int, actor: Actor, expected_versions: list[int] | None) -> None:
    rows = await BookTable.delete().where(_guarded(book_id, actor, expected_versions)).returning(BookTable.id)
    if not rows:
        raise await _explain_refusal(book_id, actor)
