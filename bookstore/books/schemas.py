"""Request and response bodies of the books API, with every field rule the catalogue enforces."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from bookstore.books.isbn import InvalidIsbnError, normalise_isbn
from bookstore.books.tables import AUTHOR_MAX_LENGTH, PRICE_DIGITS, TITLE_MAX_LENGTH
from bookstore.core.validation import SingleLineText, exact_pattern, field_error, has_visible_character

__all__ = [
    "MAX_STOCK",
    "PRICE_TEXT_PATTERN",
    "TOTAL_COUNT_LIMIT",
    "TYPE_DECODERS",
    "Book",
    "BookCreate",
    "BookPage",
    "BookUpdate",
    "Price",
    "SortField",
    "check_price",
    "price_from_text",
]

_CENT = Decimal("0.01")
MAX_PRICE = Decimal(10 ** (PRICE_DIGITS[0] - PRICE_DIGITS[1])) - _CENT
# A price written as text: ASCII digits and at most two decimals, no sign, exponent, spaces or
# leading zeros ("12.50", "12.5", "12", "0.99").
PRICE_TEXT_PATTERN = exact_pattern(r"(?:0|[1-9][0-9]*)(?:\.[0-9]{1,2})?")
_PRICE_TEXT = re.compile(PRICE_TEXT_PATTERN)
_PRICE_TEXT_MESSAGE = "must be a decimal such as 12.50: ASCII digits, at most two decimals, no sign or exponent"

# Lists count their matches only up to here: an exact count of a million rows costs more than the
# page itself, and no reader needs more than "over a thousand".
TOTAL_COUNT_LIMIT = 1000

_TEXT_RULE = "One line (no control characters or line separators), with at least one visible character."
Title = Annotated[
    SingleLineText,
    Meta(min_length=1, max_length=TITLE_MAX_LENGTH, description=_TEXT_RULE, examples=["The Left Hand of Darkness"]),
]
Author = Annotated[
    SingleLineText,
    Meta(min_length=1, max_length=AUTHOR_MAX_LENGTH, description=_TEXT_RULE, examples=["Ursula K. Le Guin"]),
]
IsbnInput = Annotated[
    str,
    Meta(
        min_length=10,
        max_length=20,
        description="ISBN-10 or ISBN-13, hyphens and spaces allowed; stored and returned as ISBN-13.",
        examples=["978-0-441-47812-5"],
    ),
]


class Price(Decimal):
    """A price as the API accepts it: a JSON number, or a decimal string in canonical form.

    A type of its own because msgspec hands text meant for a ``Decimal`` to Python's lax
    ``Decimal()`` (``"1_000"``, ``"١٢"``, ``" 12.5 "``, ``"1e3"`` ...); Litestar decodes this one
    with :func:`decode_price` instead (see ``TYPE_DECODERS``).
    """


def price_from_text(text: str) -> Price:
    """The price a canonical decimal string means; ValueError saying why for any other text."""
    if _PRICE_TEXT.fullmatch(text) is None:
        raise ValueError(_PRICE_TEXT_MESSAGE)
    return Price(text)


def decode_price(target_type: type[Price], value: Any) -> Price:
    """Litestar type decoder: a price from what the JSON body held (text, or a number)."""
    if isinstance(value, str):
        return price_from_text(value)
    if isinstance(value, float):
        return Price(repr(value))  # the shortest text that reads back as this float, not its binary expansion
    if isinstance(value, int) and not isinstance(value, bool):
        return Price(value)
    raise ValueError("must be a number or a decimal string such as 12.50")


TYPE_DECODERS = [(lambda target_type: target_type is Price, decode_price)]

PriceInput = Annotated[
    Price,
    Meta(
        description=(
            f"A number or a decimal string, 0 to {MAX_PRICE}, at most two decimal places; as a string "
            "only ASCII digits with an optional decimal point (no sign, exponent, spaces or leading zeros)."
        ),
        examples=["12.50"],
        # Litestar would document a Decimal subclass as a string only; numbers are accepted too.
        extra_json_schema={"extra": {"type": ["string", "number"], "pattern": PRICE_TEXT_PATTERN}},
    ),
]
PublishDate = Annotated[date, Meta(description="ISO date, at most one year in the future.")]
# Far below integer's 2**31-1, so stock returned by cancelled orders cannot overflow the column.
MAX_STOCK = 1_000_000_000
StockInput = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_STOCK,
        description="Copies in stock (orders take from it). Omitted on create: 0; omitted on PUT: unchanged.",
        examples=[12],
    ),
]

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
    "relevance",
]


def check_price(value: Decimal, field: str = "price") -> Price:
    """Return the price with two decimal places, or raise a field error."""
    if not value.is_finite():
        raise field_error(field, "must be a finite number")
    if value < 0:
        raise field_error(field, "must be >= 0")
    if value > MAX_PRICE:
        raise field_error(field, f"must be <= {MAX_PRICE}")
    if value != value.quantize(_CENT):
        raise field_error(field, "must have at most two decimal places")
    return Price(value.quantize(_CENT))


def _check_visible(value: str, field: str) -> str:
    if not has_visible_character(value):
        raise field_error(field, "must contain a visible character")
    return value


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
    stock: StockInput | UnsetType = UNSET

    def __post_init__(self) -> None:
        self.title = _check_visible(self.title, "title")
        self.author = _check_visible(self.author, "author")
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
    stock: StockInput | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.title is not UNSET:
            self.title = _check_visible(self.title, "title")
        if self.author is not UNSET:
            self.author = _check_visible(self.author, "author")
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
    stock: Annotated[int, Meta(description="Copies in stock.")]
    created_at: datetime
    updated_at: datetime
    created_by: Annotated[int | None, Meta(description="Id of the user who added the book.")]
    cover_url: Annotated[
        str | None,
        Meta(description="Where the book's cover image is served (it changes with the cover); null without one."),
    ]


class BookPage(Struct):
    items: list[Book]
    total: Annotated[
        int | None,
        Meta(
            description=(
                f"Books matching the filters, counted up to {TOTAL_COUNT_LIMIT} (see `total_exact`); null "
                "when not counted (`include_total=false`, and by default for `q` searches)."
            )
        ),
    ]
    limit: int
    offset: int
    total_exact: Annotated[
        bool,
        Meta(
            description=(
                f"True when `total` is the exact count; false when more than {TOTAL_COUNT_LIMIT} match "
                "or nothing was counted."
            )
        ),
    ]
    next_cursor: Annotated[
        str | None,
        Meta(description="Pass as `cursor` (with the same filters and sort) for the next page; null on the last."),
    ]
    prev_cursor: Annotated[str | None, Meta(description="Pass as `cursor` for the previous page; null on the first.")]
