"""Request and response bodies of the books API, with every field rule the catalogue enforces."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from bookstore.books.isbn import InvalidIsbnError, normalise_isbn
from bookstore.books.tables import AUTHOR_MAX_LENGTH, PRICE_DIGITS, TITLE_MAX_LENGTH
from bookstore.core.validation import SingleLineText, field_error

__all__ = [
    "Book",
    "BookCreate",
    "BookPage",
    "BookUpdate",
    "SortField",
    "check_price",
]

_CENT = Decimal("0.01")
MAX_PRICE = Decimal(10 ** (PRICE_DIGITS[0] - PRICE_DIGITS[1])) - _CENT

Title = Annotated[
    SingleLineText, Meta(min_length=1, max_length=TITLE_MAX_LENGTH, examples=["The Left Hand of Darkness"])
]
Author = Annotated[SingleLineText, Meta(min_length=1, max_length=AUTHOR_MAX_LENGTH, examples=["Ursula K. Le Guin"])]
IsbnInput = Annotated[
    str,
    Meta(
        min_length=10,
        max_length=20,
        description="ISBN-10 or ISBN-13, hyphens and spaces allowed; stored and returned as ISBN-13.",
        examples=["978-0-441-47812-5"],
    ),
]
PriceInput = Annotated[
    Decimal,
    Meta(
        description=f"Decimal string or number, 0 to {MAX_PRICE}, at most two decimal places.",
        examples=["12.50"],
        # Litestar documents Decimal as a string only; the decoder takes JSON numbers as well.
        extra_json_schema={"extra": {"type": ["string", "number"]}},
    ),
]
PublishDate = Annotated[date, Meta(description="ISO date, at most one year in the future.")]

SortField = Literal[
    "title",
    "-title",
    "author",
    "-author",
    "publish_date",
    "-publish_date",
    "price",
    "-price",
    "created_at",
    "-created_at",
]


def check_price(value: Decimal, field: str = "price") -> Decimal:
    """Return the price with two decimal places, or raise a field error."""
    if not value.is_finite():
        raise field_error(field, "must be a finite number")
    if value < 0:
        raise field_error(field, "must be >= 0")
    if value > MAX_PRICE:
        raise field_error(field, f"must be <= {MAX_PRICE}")
    if value != value.quantize(_CENT):
        raise field_error(field, "must have at most two decimal places")
    return value.quantize(_CENT)


def _check_isbn(value: str) -> str:
    try:
        return normalise_isbn(value)
    except InvalidIsbnError as error:
        raise field_error("isbn", str(error)) from None


def _latest_publish_date() -> date:
    today = date.today()
    try:
        return today.replace(year=today.year + 1)
    except ValueError:  # 29 February
        return today + timedelta(days=365)


def _check_publish_date(value: date) -> date:
    if value > _latest_publish_date():
        raise field_error("publish_date", "must be at most one year in the future")
    return value


class BookCreate(Struct, forbid_unknown_fields=True):
    """A whole book: the body of ``POST /books`` and of ``PUT /books/{id}``."""

    title: Title
    author: Author
    publish_date: PublishDate
    isbn: IsbnInput
    price: PriceInput

    def __post_init__(self) -> None:
        self.isbn = _check_isbn(self.isbn)
        self.price = check_price(self.price)
        self.publish_date = _check_publish_date(self.publish_date)


class BookUpdate(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """``PATCH /books/{id}``: only the fields present change."""

    title: Title | UnsetType = UNSET
    author: Author | UnsetType = UNSET
    publish_date: PublishDate | UnsetType = UNSET
    isbn: IsbnInput | UnsetType = UNSET
    price: PriceInput | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.isbn is not UNSET:
            self.isbn = _check_isbn(self.isbn)
        if self.price is not UNSET:
            self.price = check_price(self.price)
        if self.publish_date is not UNSET:
            self.publish_date = _check_publish_date(self.publish_date)


class Book(Struct):
    id: int
    title: str
    author: str
    publish_date: date
    isbn: Annotated[str, Meta(description="ISBN-13", examples=["9780441478125"])]
    price: Annotated[Decimal, Meta(description="Two decimal places, as a string.", examples=["12.50"])]
    created_at: datetime
    updated_at: datetime
    created_by: Annotated[int | None, Meta(description="Id of the user who added the book.")]


class BookPage(Struct):
    items: list[Book]
    total: int
    limit: int
    offset: int
