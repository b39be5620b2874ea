"""The query parameters of ``GET /api/v1/books``, parsed into :class:`BookFilters` by a dependency."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from litestar import Request
from litestar.params import QueryParameter

from bookstore.books.isbn import InvalidIsbnError, normalise_isbn
from bookstore.books.queries import BookFilters, search_query
from bookstore.books.schemas import SortField, check_price
from bookstore.core.errors import invalid_input
from bookstore.core.validation import split_field_error

__all__ = ["provide_book_filters"]

_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"


def _price(request: Request[Any, Any, Any], value: str | None, key: str) -> Decimal | None:
    # Typed as text, not Decimal: msgspec cannot bound a Decimal (`ge` on one fails every request
    # with a 500, stack-facts §4), and the two-decimal rule needs check_price anyway.
    if value is None:
        return None
    try:
        return check_price(Decimal(value), key)
    except InvalidOperation:
        raise invalid_input(request, "must be a decimal number such as 12.50", key=key, source="query") from None
    except ValueError as error:
        raise invalid_input(request, split_field_error(error)[0], key=key, source="query") from None


def provide_book_filters(
    request: Request[Any, Any, Any],
    limit: Annotated[int, QueryParameter(ge=1, le=100, description="Page size.")] = 20,
    offset: Annotated[int, QueryParameter(ge=0, le=1_000_000, description="Items to skip.")] = 0,
    author: Annotated[
        str | None,
        QueryParameter(min_length=1, max_length=200, pattern=_NO_CONTROL, description="Exact author, any case."),
    ] = None,
    q: Annotated[
        str | None,
        QueryParameter(min_length=1, max_length=200, pattern=_NO_CONTROL, description="Words in title or author."),
    ] = None,
    isbn: Annotated[str | None, QueryParameter(min_length=10, max_length=20, description="ISBN-10 or -13.")] = None,
    published_after: Annotated[date | None, QueryParameter(description="On or after this date.")] = None,
    published_before: Annotated[date | None, QueryParameter(description="On or before this date.")] = None,
    min_price: Annotated[
        str | None, QueryParameter(max_length=20, description="At least this price.", examples=[])
    ] = None,
    max_price: Annotated[str | None, QueryParameter(max_length=20, description="At most this price.")] = None,
    sort: Annotated[SortField, QueryParameter(description="Sort key; prefix `-` for descending.")] = "-created_at",
) -> BookFilters:
    """The filters of a list request; 400 naming the parameter when one is not acceptable."""
    if q is not None and search_query(q) is None:
        raise invalid_input(request, "must contain at least one letter or digit", key="q", source="query")
    if isbn is not None:
        try:
            isbn = normalise_isbn(isbn)
        except InvalidIsbnError as error:
            raise invalid_input(request, str(error), key="isbn", source="query") from None
    return BookFilters(
        limit=limit,
        offset=offset,
        author=author,
        q=q,
        isbn=isbn,
        published_after=published_after,
        published_before=published_before,
        min_price=_price(request, min_price, "min_price"),
        max_price=_price(request, max_price, "max_price"),
        sort=sort,
    )
