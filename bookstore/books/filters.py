"""The query parameters of ``GET /api/v1/books``, parsed into :class:`BookFilters` by a dependency,
and the page cursors of a listing, which belong to its filters and sort."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from bookstore.books.isbn import InvalidIsbnError, normalise_isbn
from bookstore.books.queries import MAX_SEARCH_WORDS, BookFilters, PagePosition, search_words
from bookstore.books.schemas import (
    PRICE_TEXT_PATTERN,
    TOTAL_COUNT_LIMIT,
    SortField,
    check_price,
    price_from_text,
)
from bookstore.core.cursors import CURSOR_MAX_LENGTH, CursorSigner, InvalidCursorError
from bookstore.core.errors import invalid_input
from bookstore.core.http import require_canonical_ints, require_single_values
from bookstore.core.validation import SINGLE_LINE_PATTERN, split_field_error

__all__ = ["CURSOR_LISTING", "MAX_OFFSET", "book_cursor", "provide_book_filters"]

# Offset paging reads and skips every row before the page, so it is bounded; cursors go anywhere.
MAX_OFFSET = 10_000
_KEY_TYPES: dict[str, type] = {
    "title": str,
    "author": str,
    "publish_date": date,
    "price": Decimal,
    "created_at": datetime,
    "relevance": float,
}
_DIRECTIONS: dict[str, Literal["after", "before"]] = {"a": "after", "b": "before"}
_DIRECTION_CODES = {name: code for code, name in _DIRECTIONS.items()}
# enc_hook: the price filters are `Price`, a Decimal subclass msgspec does not encode by itself.
_encoder = msgspec.json.Encoder(enc_hook=str)


def _listing_fingerprint(filters: BookFilters) -> str:
    """Which listing a cursor belongs to: the filters and the sort, not the page size (which a
    client may change between pages)."""
    described = _encoder.encode(
        [
            filters.author,
            filters.q,
            filters.isbn,
            filters.published_after,
            filters.published_before,
            filters.min_price,
            filters.max_price,
            filters.sort,
        ]
    )
    return hashlib.blake2b(described, digest_size=12).hexdigest()


# The name the signer binds this listing's cursors to: another listing's cursor does not open here.
CURSOR_LISTING = "books"


def book_cursor(signer: CursorSigner, filters: BookFilters, position: PagePosition) -> str:
    """The cursor of the page at ``position`` of the listing ``filters`` describe."""
    return signer.sign(
        [_listing_fingerprint(filters), _DIRECTION_CODES[position.direction], position.key, position.book_id],
        listing=CURSOR_LISTING,
    )


def _position_of(signer: CursorSigner, cursor: str, filters: BookFilters) -> PagePosition:
    try:
        fingerprint, direction, key, book_id = signer.open(cursor, listing=CURSOR_LISTING)
    except InvalidCursorError as error:
        raise invalid_input(str(error), key="cursor", source="query") from None
    if fingerprint != _listing_fingerprint(filters):
        raise invalid_input(
            "belongs to a listing with other filters or another sort; start again from the first page",
            key="cursor",
            source="query",
        )
    # Signed by this service for this sort, so the values are as book_cursor wrote them.
    sort_key_type = _KEY_TYPES[filters.sort.lstrip("-")]
    return PagePosition(_DIRECTIONS[direction], msgspec.convert(key, sort_key_type), book_id)


def _price(value: str | None, key: str) -> Decimal | None:
    # Typed as text, not Decimal: msgspec would parse it with the lax Decimal() and cannot bound
    # a Decimal (`ge` on one fails every request with a 500, stack-facts §4).
    if value is None:
        return None
    try:
        return check_price(price_from_text(value), key)
    except ValueError as error:
        raise invalid_input(split_field_error(error)[0], key=key, source="query") from None


def provide_book_filters(
    request: Request[Any, Any, Any],
    page_cursors: NamedDependency[CursorSigner],
    limit: Annotated[int, QueryParameter(ge=1, le=100, description="Page size.")] = 20,
    offset: Annotated[
        int,
        QueryParameter(
            ge=0,
            le=MAX_OFFSET,
            description=f"Items to skip (at most {MAX_OFFSET}; use `cursor` to go further). Not with `cursor`.",
        ),
    ] = 0,
    cursor: Annotated[
        str | None,
        QueryParameter(
            min_length=1,
            max_length=CURSOR_MAX_LENGTH,
            description=(
                "`next_cursor` or `prev_cursor` of a page of this listing (same filters and sort), valid for a day."
            ),
        ),
    ] = None,
    include_total: Annotated[
        bool | None,
        QueryParameter(
            description=(
                f"Count the matches (up to {TOTAL_COUNT_LIMIT}) into `total`. Default: true, except for "
                "`q` searches, whose count grows with the number of matches."
            )
        ),
    ] = None,
    author: Annotated[
        str | None,
        QueryParameter(
            min_length=1, max_length=200, pattern=SINGLE_LINE_PATTERN, description="Exact author, any case."
        ),
    ] = None,
    q: Annotated[
        str | None,
        QueryParameter(
            min_length=1,
            max_length=200,
            pattern=SINGLE_LINE_PATTERN,
            description=(
                f"Up to {MAX_SEARCH_WORDS} words (letters and digits) that title or author must all have; "
                "the last one may be the start of a word."
            ),
        ),
    ] = None,
    isbn: Annotated[str | None, QueryParameter(min_length=10, max_length=20, description="ISBN-10 or -13.")] = None,
    published_after: Annotated[date | None, QueryParameter(description="On or after this date.")] = None,
    published_before: Annotated[date | None, QueryParameter(description="On or before this date.")] = None,
    min_price: Annotated[
        str | None, QueryParameter(max_length=20, pattern=PRICE_TEXT_PATTERN, description="At least this price.")
    ] = None,
    max_price: Annotated[
        str | None, QueryParameter(max_length=20, pattern=PRICE_TEXT_PATTERN, description="At most this price.")
    ] = None,
    sort: Annotated[
        SortField,
        QueryParameter(description="Sort key; prefix `-` for descending. `relevance` (best match first) needs `q`."),
    ] = "-created_at",
) -> BookFilters:
    """The filters of a list request; 400 naming the parameter when one is not acceptable."""
    require_single_values(request, _PARAMETERS)
    require_canonical_ints(request, "limit", "offset")
    if q is not None:
        words = search_words(q)
        if not words:
            raise invalid_input("must contain at least one letter or digit", key="q", source="query")
        if len(words) > MAX_SEARCH_WORDS:
            raise invalid_input(f"must have at most {MAX_SEARCH_WORDS} different words", key="q", source="query")
    if sort == "relevance" and q is None:
        raise invalid_input("`relevance` needs a search (`q`)", key="sort", source="query")
    if cursor is not None and "offset" in request.query_params:
        raise invalid_input("cannot be combined with `cursor`", key="offset", source="query")
    if isbn is not None:
        try:
            isbn = normalise_isbn(isbn)
        except InvalidIsbnError as error:
            raise invalid_input(str(error), key="isbn", source="query") from None
    filters = BookFilters(
        limit=limit,
        offset=offset,
        include_total=q is None if include_total is None else include_total,
        author=author,
        q=q,
        isbn=isbn,
        published_after=published_after,
        published_before=published_before,
        min_price=_price(min_price, "min_price"),
        max_price=_price(max_price, "max_price"),
        sort=sort,
    )
    if cursor is None:
        return filters
    return dataclasses.replace(filters, position=_position_of(page_cursors, cursor, filters))


# The query parameters of a listing (every parameter above but the request and the signer).
_PARAMETERS = frozenset(inspect.signature(provide_book_filters).parameters) - {"request", "page_cursors"}
