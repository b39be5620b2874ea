"""Request and response bodies of the orders API.

Clients send only which books and how many; prices, titles and the total are the service's,
taken from the catalogue when the order is placed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from msgspec import Meta, Struct

from bookstore.core.errors import ProblemDetails
from bookstore.core.validation import field_error

__all__ = [
    "MAX_BOOK_ID",
    "MAX_LINES",
    "MAX_QUANTITY",
    "ORDERS_PATH",
    "Order",
    "OrderCreate",
    "OrderItem",
    "OrderItemCreate",
    "OrderPage",
    "OrderStatus",
    "OutOfStockProblem",
    "StockShortage",
    "UnknownBooksProblem",
]

# Where the orders API lives; a placed order's Location is below it (and is stored with replays).
ORDERS_PATH = "/api/v1/orders"
MAX_LINES = 50
MAX_QUANTITY = 100
# As for book ids in paths: far below bigint's limit, and exact both in msgspec and in OpenAPI.
MAX_BOOK_ID = 10**18

OrderStatus = Literal["placed", "cancelled"]
_MONEY = "Two decimal places, as a string."


class OrderItemCreate(Struct, forbid_unknown_fields=True):
    book_id: Annotated[int, Meta(ge=1, le=MAX_BOOK_ID, description="Id of the book.")]
    quantity: Annotated[int, Meta(ge=1, le=MAX_QUANTITY, description="Copies of it.")]


class OrderCreate(Struct, forbid_unknown_fields=True):
    """The body of ``POST /api/v1/orders``."""

    items: Annotated[
        list[OrderItemCreate],
        Meta(
            min_length=1,
            max_length=MAX_LINES,
            description="Each book at most once (a book named twice is refused with 400, not merged).",
        ),
    ]

    def __post_init__(self) -> None:
        ordered: set[int] = set()
        for index, line in enumerate(self.items):
            if line.book_id in ordered:
                raise field_error(f"items[{index}].book_id", "names a book another line already orders")
            ordered.add(line.book_id)


class OrderItem(Struct):
    book_id: Annotated[int | None, Meta(description="Null once the book has been deleted from the catalogue.")]
    title: Annotated[str, Meta(description="The book's title when the order was placed.")]
    quantity: int
    unit_price: Annotated[Decimal, Meta(description=f"The book's price when the order was placed. {_MONEY}")]
    line_total: Annotated[Decimal, Meta(description=f"quantity x unit_price. {_MONEY}")]


class Order(Struct):
    """An order as the API shows it."""

    id: int
    status: OrderStatus
    items: Annotated[list[OrderItem], Meta(description="By book id.")]
    total: Annotated[Decimal, Meta(description=f"Sum of the line totals. {_MONEY}")]
    created_at: datetime
    cancelled_at: datetime | None


class OrderPage(Struct):
    items: Annotated[list[Order], Meta(description="Newest first.")]
    limit: int
    next_cursor: Annotated[
        str | None, Meta(description="Pass as `cursor` for the next (older) page; null on the last.")
    ]
    prev_cursor: Annotated[
        str | None, Meta(description="Pass as `cursor` for the previous (newer) page; null on the first.")
    ]


class StockShortage(Struct):
    book_id: int
    requested: int
    available: int


class OutOfStockProblem(ProblemDetails):
    """409 from ``POST /api/v1/orders``: some books lack stock, and nothing was ordered."""

    unavailable: Annotated[
        list[StockShortage] | None,
        Meta(description="Each book short of stock (absent only when a retry raced its first request)."),
    ] = None


class UnknownBooksProblem(ProblemDetails, kw_only=True):
    """404 from ``POST /api/v1/orders``: some books do not exist, and nothing was ordered."""

    unknown_book_ids: list[int]
