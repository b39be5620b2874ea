"""Reads and writes of the ``book`` table.

These are the service's hot paths, so they are parameterised SQL run straight on the pool's
prepared statements (``core.database.fetch_one``/``fetch_all``): building the same query with
Piccolo cost ~150 us of CPU per request, more than PostgreSQL spent answering it. The table,
its constraints and its migrations remain Piccolo's.

Writes are single conditional statements: ownership and the expected version (``If-Match``)
are checked in the ``UPDATE``/``DELETE`` itself, never read first and written later, so two
concurrent writers cannot both succeed against the same version.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from operator import itemgetter
from typing import Any, Literal

import asyncpg
import msgspec

from bookstore.books.schemas import TOTAL_COUNT_LIMIT, Book, BookCreate, SortField
from bookstore.books.tables import BookTable
from bookstore.core.database import fetch_all, fetch_one, is_unique_violation
from bookstore.core.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
)
from bookstore.covers.schemas import cover_url

__all__ = [
    "MAX_SEARCH_WORDS",
    "SEARCH_WINDOW",
    "Actor",
    "BookFilters",
    "BookListing",
    "PagePosition",
    "book_count_query",
    "book_page_query",
    "check_may_change",
    "create_book",
    "delete_book",
    "get_book",
    "list_books",
    "require_changeable",
    "search_query",
    "search_words",
    "sort_key_column",
    "to_book",
    "update_book",
]

# The table is the one source of the column list; the Book struct shows all but `version`
# (which travels as the ETag) and the cover's columns (shown as `cover_url`), and must not name
# another column the table lacks.
_TABLE_COLUMNS = tuple(column._meta.db_column_name for column in BookTable._meta.columns)
_BOOK_FIELDS = tuple(field for field in Book.__struct_fields__ if field != "cover_url")
if missing := set(_BOOK_FIELDS) - set(_TABLE_COLUMNS):
    raise RuntimeError(f"Book names columns the book table lacks: {sorted(missing)}")
_COLUMNS = ", ".join(_TABLE_COLUMNS)
# itemgetter: 0.4 us a row, against 0.56 for naming each field and 1.2 for a comprehension.
_book_values = itemgetter(*_BOOK_FIELDS)
_SORT_COLUMNS = {
    "title": "title",
    "author": "author",
    "publish_date": "publish_date",
    "price": "price",
    "created_at": "created_at",
}
_RANK_COLUMN = "rank"
_WRITABLE_COLUMNS = frozenset({"title", "author", "publish_date", "isbn", "price", "stock"})
# Letters and digits: `\w` also takes "_", which the search parser drops, leaving an empty query.
_WORD = re.compile(r"[^\W_]+")
# Each word is one more term for the search index to intersect: ~5 ms each on 20,000 books.
MAX_SEARCH_WORDS = 10
# Rows of the page order a text search tries before it collects every match (_search_page_rows):
# a word in 1 % of the books fills a page of 20 within ~2,000 rows. Reading them costs ~5 ms at a
# million books (measured: 12 ms for 5,000), paid in full by searches that then need the index.
SEARCH_WINDOW = 2000
_ISBN_CONSTRAINT = "book_isbn_key"
_DUPLICATE_ISBN = "A book with this ISBN already exists."

_GET_BOOK = f"SELECT {_COLUMNS} FROM book WHERE id = $1"
_INSERT_BOOK = (
    "INSERT INTO book (title, author, publish_date, isbn, price, stock, created_by) "
    f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}"
)
_OWNER_OF_BOOK = "SELECT created_by FROM book WHERE id = $1"


@dataclass(frozen=True)
class Actor:
    """Who is writing: creators may change their own books, admins any book."""

    user_id: int
    is_admin: bool


@dataclass(frozen=True)
class PagePosition:
    """Where a keyset page starts: just after (or before) the book ``book_id`` whose sort key is
    ``key`` (the value of the sort column, or the relevance rank)."""

    direction: Literal["after", "before"]
    key: object
    book_id: int


@dataclass(frozen=True)
class BookFilters:
    limit: int = 20
    offset: int = 0
    position: PagePosition | None = None
    include_total: bool = True
    author: str | None = None
    q: str | None = None
    isbn: str | None = None
    published_after: date | None = None
    published_before: date | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    sort: SortField = "-created_at"


@dataclass(frozen=True)
class BookListing:
    """One page of books, the count of all matches (up to :data:`TOTAL_COUNT_LIMIT`, or None when
    not asked for), and the positions of the neighbouring pages (None where there is none)."""

    books: list[Book]
    total: int | None
    total_exact: bool
    next_position: PagePosition | None
    prev_position: PagePosition | None


def search_words(text: str) -> list[str]:
    """The distinct words of ``text``, lower-cased: runs of letters and digits, in order."""
    return list(dict.fromkeys(_WORD.findall(text.lower())))


def search_query(text: str) -> str | None:
    """A ``tsquery`` needing every word of ``text``, the last one also as a prefix, or None.

    Prefix matching only for the last word ("prefix-last", as search boxes complete the word being
    typed): in the search index a prefix term collects every word it starts, which made a search
    of three common prefixes on a million books take ~55 ms against ~18 ms with only the last one.
    Only letters and digits reach the query, so no user input can inject tsquery operators. A word
    given twice is matched once: each term costs an index scan, and `t t t ...` (100 terms) made
    one search take seconds.
    """
    words = search_words(text)
    if not words:
        return None
    return " & ".join([*words[:-1], f"{words[-1]}:*"])


def to_book(row: Mapping[str, Any]) -> Book:
    """The ``Book`` of a row selected with the table's columns."""
    cover_key = row["cover_key"]
    url = None if cover_key is None else cover_url(row["id"], cover_key)
    return Book(*_book_values(row), url)  # type: ignore[call-arg]  # the values are the fields before cover_url


class _Statement:
    """Collects SQL conditions with numbered parameters ($1, $2 ...)."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[object] = []
        self.search: str | None = None  # the text search's tsquery expression, when there is one

    def param(self, value: object) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def where(self) -> str:
        return f" WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


def _filtered(filters: BookFilters, *, with_search: bool = True) -> _Statement:
    """The conditions of ``filters``; the text search left out when ``with_search`` is false."""
    statement = _Statement()
    conditions = statement.conditions
    if filters.author is not None:
        conditions.append(f"lower(author) = lower({statement.param(filters.author)})")
    if filters.q is not None:
        statement.search = f"to_tsquery('simple', {statement.param(search_query(filters.q) or '')})"
        if with_search:
            conditions.append(f"search_vector @@ {statement.search}")
    if filters.isbn is not None:
        conditions.append(f"isbn = {statement.param(filters.isbn)}")
    if filters.published_after is not None:
        conditions.append(f"publish_date >= {statement.param(filters.published_after)}")
    if filters.published_before is not None:
        conditions.append(f"publish_date <= {statement.param(filters.published_before)}")
    if filters.min_price is not None:
        conditions.append(f"price >= {statement.param(filters.min_price)}")
    if filters.max_price is not None:
        conditions.append(f"price <= {statement.param(filters.max_price)}")
    return statement


def sort_key_column(sort: SortField) -> str:
    """The result column whose value orders a page (with ``id``): the sort column or ``rank``."""
    return _RANK_COLUMN if sort == "relevance" else _SORT_COLUMNS[sort.lstrip("-")]


def _page_order(statement: _Statement, filters: BookFilters) -> tuple[str, str, str]:
    """The sort expression, the extra columns to select, and the direction of this page's scan.

    A ``before`` page is read backwards from its position (and put back in order afterwards), so
    that it too is one index scan of ``limit + 1`` rows.
    """
    if filters.sort == "relevance":
        if statement.search is None:
            raise ValueError("relevance needs a search")
        expression, descending = f"ts_rank(search_vector, {statement.search})", True
        extra = f", {expression} AS {_RANK_COLUMN}"
    else:
        expression, descending, extra = _SORT_COLUMNS[filters.sort.lstrip("-")], filters.sort.startswith("-"), ""
    position = filters.position
    if position is not None:
        backwards = position.direction == "before"
        comparison = "<" if descending != backwards else ">"
        key = statement.param(position.key)
        if filters.sort == "relevance":
            key = f"{key}::real"  # ts_rank's type, so the rank read from the cursor compares exactly
        statement.conditions.append(f"({expression}, id) {comparison} ({key}, {statement.param(position.book_id)})")
        descending = descending != backwards
    return expression, extra, "DESC" if descending else "ASC"


def book_page_query(filters: BookFilters, *, search_window: int | None = None) -> tuple[str, list[object]]:
    """The SELECT of one page of books (``limit + 1`` rows, the last one only telling that more
    follow) and its arguments; public so that tests can EXPLAIN it.

    With ``search_window`` (only for a text search), the search is applied to the first that many
    rows in page order instead of the whole table; see :func:`_search_page_rows` for why.
    """
    if search_window is not None:
        if filters.q is None or filters.sort == "relevance":
            raise ValueError("a search window needs a search sorted by a column")
        statement = _filtered(filters, with_search=False)
    else:
        statement = _filtered(filters)
    expression, extra, direction = _page_order(statement, filters)
    order = f" ORDER BY {expression} {direction}, id {direction}"
    page = f"{order} LIMIT {statement.param(filters.limit + 1)} OFFSET {statement.param(filters.offset)}"
    if search_window is not None:
        inner = f"SELECT {_COLUMNS}, search_vector FROM book{statement.where()}{order} LIMIT {search_window}"
        return f"SELECT {_COLUMNS} FROM ({inner}) AS head WHERE search_vector @@ {statement.search}{page}", (
            statement.args
        )
    if filters.q is not None and filters.sort != "relevance":
        # OFFSET 0 keeps the planner from walking the sort index and testing every row against the
        # search: it picks that when it overestimates the matches, as it does for every prefix
        # search (2 % of the table, whatever the word), and a rare word then reads the whole table.
        return f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS} FROM book{statement.where()} OFFSET 0) AS matches{page}", (
            statement.args
        )
    return f"SELECT {_COLUMNS}{extra} FROM book{statement.where()}{page}", statement.args


def book_count_query(filters: BookFilters) -> tuple[str, list[object]]:
    """The count of matches up to ``TOTAL_COUNT_LIMIT + 1`` and its arguments (public for EXPLAIN)."""
    statement = _filtered(filters)
    matches = f"SELECT 1 FROM book{statement.where()}"
    if filters.q is not None:
        matches = f"SELECT 1 FROM ({matches} OFFSET 0) AS matches"  # the index, as in book_page_query
    return f"SELECT count(*) FROM ({matches} LIMIT {TOTAL_COUNT_LIMIT + 1}) AS capped", statement.args


async def _search_page_rows(filters: BookFilters) -> list[asyncpg.Record]:
    """A page of a text search sorted by a column.

    Whether to walk the sort index testing each row, or collect every match from the search
    index and sort them, depends on how common the words are; the planner cannot tell for prefix
    searches, and either wrong choice costs a scan of the whole table. So first try the walk on a
    bounded window of the page order (a common word fills the page within a few hundred rows),
    and only when that does not fill the page collect the matches (few, or the window would have
    held enough of them).
    """
    sql, args = book_page_query(filters, search_window=SEARCH_WINDOW)
    rows = await fetch_all(sql, *args, read_only=True)
    if len(rows) > filters.limit:
        return rows
    sql, args = book_page_query(filters)
    return await fetch_all(sql, *args, read_only=True)


async def _count(filters: BookFilters) -> tuple[int, bool]:
    sql, args = book_count_query(filters)
    row = await fetch_one(sql, *args, read_only=True)
    counted: int = row[0] if row else 0
    return min(counted, TOTAL_COUNT_LIMIT), counted <= TOTAL_COUNT_LIMIT


def _position(direction: Literal["after", "before"], row: asyncpg.Record, filters: BookFilters) -> PagePosition:
    return PagePosition(direction, row[sort_key_column(filters.sort)], row["id"])


async def _page_rows(filters: BookFilters) -> list[asyncpg.Record]:
    if filters.q is not None and filters.sort != "relevance":
        return await _search_page_rows(filters)
    sql, args = book_page_query(filters)
    return await fetch_all(sql, *args, read_only=True)


def _turned_back(position: PagePosition, sort: SortField) -> PagePosition:
    """The position in the other direction whose page includes the book at ``position`` itself.

    Ids are integers, so moving the id one step back across the book, in page order, includes
    exactly it.
    """
    descending = sort == "relevance" or sort.startswith("-")
    if position.direction == "after":
        return PagePosition("before", position.key, position.book_id + (-1 if descending else 1))
    return PagePosition("after", position.key, position.book_id + (1 if descending else -1))


async def list_books(filters: BookFilters) -> BookListing:
    """One page of books matching ``filters``, their capped count and the neighbouring pages.

    A page before a position holds only books before it, so it may be short at the start of the
    listing; a page left empty by books deleted between requests still leads back the way the
    reader came.
    """
    total, total_exact = await _count(filters) if filters.include_total else (None, False)
    rows = await _page_rows(filters)
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    position = filters.position
    backwards = position is not None and position.direction == "before"
    if backwards:
        rows.reverse()
    next_position = prev_position = None
    if rows:
        if more or backwards:
            next_position = _position("after", rows[-1], filters)
        if (more and backwards) or (not backwards and (position is not None or filters.offset > 0)):
            prev_position = _position("before", rows[0], filters)
    elif position is not None:
        turned = _turned_back(position, filters.sort)
        if backwards:
            next_position = turned
        else:
            prev_position = turned
    return BookListing([to_book(row) for row in rows], total, total_exact, next_position, prev_position)


async def get_book(book_id: int) -> tuple[Book, int]:
    """The book and its version, or NotFoundError."""
    row = await fetch_one(_GET_BOOK, book_id, read_only=True)
    if row is None:
        raise NotFoundError(f"Book {book_id} does not exist.")
    return to_book(row), row["version"]


async def _write(sql: str, *args: object) -> asyncpg.Record | None:
    try:
        return await fetch_one(sql, *args)
    except asyncpg.UniqueViolationError as error:
        if is_unique_violation(error, _ISBN_CONSTRAINT):
            raise ConflictError(_DUPLICATE_ISBN) from None
        raise
    except asyncpg.ForeignKeyViolationError:
        # The creator's account was deleted by a concurrent request after this one was authenticated.
        raise AuthenticationError("The account no longer exists.") from None


async def create_book(data: BookCreate, creator_id: int) -> tuple[Book, int]:
    stock = 0 if data.stock is msgspec.UNSET else data.stock
    row = await _write(
        _INSERT_BOOK, data.title, data.author, data.publish_date, data.isbn, data.price, stock, creator_id
    )
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return to_book(row), row["version"]


def _guard(statement: _Statement, book_id: int, actor: Actor, expected_versions: list[int] | None) -> None:
    """Add the conditions of a write: the book, owned by the actor (unless admin), at a version."""
    statement.conditions.append(f"id = {statement.param(book_id)}")
    if not actor.is_admin:
        statement.conditions.append(f"created_by = {statement.param(actor.user_id)}")
    if expected_versions is not None:
        statement.conditions.append(f"version = ANY({statement.param(expected_versions)})")


def check_may_change(created_by: int | None, actor: Actor) -> None:
    """PermissionDeniedError unless ``actor`` may change a book ``created_by`` added."""
    if not actor.is_admin and created_by != actor.user_id:
        raise PermissionDeniedError("Only the user who added this book or an admin may change it.")


async def require_changeable(book_id: int, actor: Actor) -> None:
    """NotFoundError or PermissionDeniedError unless the book exists and ``actor`` may change it."""
    row = await fetch_one(_OWNER_OF_BOOK, book_id)
    if row is None:
        raise NotFoundError(f"Book {book_id} does not exist.")
    check_may_change(row["created_by"], actor)


async def _explain_refusal(book_id: int, actor: Actor) -> Exception:
    """Why a guarded write touched no row: missing book, not the actor's, or a stale version."""
    await require_changeable(book_id, actor)
    return PreconditionFailedError("The book has changed since the If-Match version; fetch it again.")


async def update_book(
    book_id: int, changes: Mapping[str, Any], actor: Actor, expected_versions: list[int] | None
) -> tuple[Book, int]:
    """Apply ``changes`` (field name -> value) if the guard holds.

    The table's trigger bumps version and updated_at when a value actually changes (for every
    writer, not just this one), so re-sending the current values keeps the version.
    """
    unknown = set(changes) - _WRITABLE_COLUMNS
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
    if not changes:
        raise ValueError("no changes to write")
    statement = _Statement()
    assignments = [f"{column} = {statement.param(value)}" for column, value in changes.items()]
    _guard(statement, book_id, actor, expected_versions)
    sql = f"UPDATE book SET {', '.join(assignments)}{statement.where()} RETURNING {_COLUMNS}"
    row = await _write(sql, *statement.args)
    if row is None:
        raise await _explain_refusal(book_id, actor)
    return to_book(row), row["version"]


async def delete_book(book_id: int, actor: Actor, expected_versions: list[int] | None) -> list[str]:
    """Delete the book if the guard holds; the storage keys of its cover files, now unreferenced here."""
    statement = _Statement()
    _guard(statement, book_id, actor, expected_versions)
    sql = f"DELETE FROM book{statement.where()} RETURNING cover_key, cover_thumbnail_key"
    row = await fetch_one(sql, *statement.args)
    if row is None:
        raise await _explain_refusal(book_id, actor)
    return [key for key in row.values() if key is not None]
