"""The query parameters of ``GET /api/v1/books``, parsed into :class:`BookFilters` by a dependency."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from litestar import Request
from litestar.params import QueryParameter

from bookstore.books.isbn import InvalidIsbnError, normalise_isbn
from bookstore.books.queries import BookFilters, search_query
from bookstore.books.schemas import PRICE_TEXT_PATTERN, SortField, check_price, price_from_text
from bookstore.core.errors import invalid_input
from bookstore.core.validation import SINGLE_LINE_PATTERN, is_canonical_int, split_field_error

__all__ = ["provide_book_filters"]


def _price(value: str | None, key: str) -> Decimal | None:
    # Typed as text, not Decimal: msgspec would parse it with the lax Decimal() and cannot bound
    # a Decimal (`ge` on one fails every request with a 500, stack-facts §4).
    if value is None:
        return None
    try:
        return check_price(price_from_text(value), key)
    except ValueError as error:
        raise invalid_input(split_field_error(error)[0], key=key, source="query") from None


def _require_canonical_ints(request: Request[Any, Any, Any], *keys: str) -> None:
    # Litestar has converted and range-checked these with msgspec's lax rules ("1e2" is 100, "1.0"
    # is 1); the text must also be canonical. Every value of a repeated key, not only the last one
    # Litestar reads.
    for key in keys:
        for text in request.query_params.getall(key, []):
            if not is_canonical_int(text):
                raise invalid_input(
                    "must be written with ASCII digits only (no sign, exponent, spaces or leading zeros)",
                    key=key,
                    source="query",
                )


def provide_book_filters(
    request: Request[Any, Any, Any],
    limit: Annotated[int, QueryParameter(ge=1, le=100, description="Page size.")] = 20,
    offset: Annotated[int, QueryParameter(ge=0, le=1_000_000, description="Items to skip.")] = 0,
    author: Annotated[
        str | None,
        QueryParameter(
            min_length=1, max_length=200, pattern=SINGLE_LINE_PATTERN, description="Exact author, any case."
        ),
    ] = None,
    q: Annotated[
        str | None,
        QueryParameter(
            min_length=1, max_length=200, pattern=SINGLE_LINE_PATTERN, description="Words in title or author."
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
    sort: Annotated[SortField, QueryParameter(description="Sort key; prefix `-` for descending.")] = "-created_at",
) -> BookFilters:
    """The filters of a list request; 400 naming the parameter when one is not acceptable."""
    _require_canonical_ints(request, "limit", "offset")
    if q is not None and search_query(q) is None:
        raise invalid_input("must contain at least one letter or digit", key="q", source="query")
    if isbn is not None:
        try:
            isbn = normalise_isbn(isbn)
        except InvalidIsbnError as error:
            raise invalid_input(str(error), key="isbn", source="query") from None
    return BookFilters(
        limit=limit,
        offset=offset,
        author=author,
        q=q,
        isbn=isbn,
        published_after=published_after,
        published_before=published_before,
        min_price=_price(min_price, "min_price"),
        max_price=_price(max_price, "max_price"),
        sort=sort,
    )
