"""HTTP routes of orders: ``/api/v1/orders``. Every route needs a token; users see their own
orders, admins everyone's."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal, cast

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from bookstore.accounts.schemas import CurrentUser
from bookstore.core.cursors import CURSOR_MAX_LENGTH, CursorSigner, InvalidCursorError
from bookstore.core.errors import PROBLEM_MEDIA_TYPE, PermissionDeniedError, invalid_input, problem_responses
from bookstore.core.http import cursor_links, require_canonical_ints, require_json_body, require_single_values
from bookstore.core.openapi import documented_header
from bookstore.orders import queries
from bookstore.orders.idempotency import (
    IDEMPOTENCY_KEY_PATTERN,
    IDEMPOTENCY_KEY_TTL,
    IdempotentRequest,
    idempotency_key_of,
    request_fingerprint,
)
from bookstore.orders.queries import OrderPosition
from bookstore.orders.schemas import (
    MAX_BOOK_ID,
    ORDERS_PATH,
    Order,
    OrderCreate,
    OrderPage,
    OutOfStockProblem,
    UnknownBooksProblem,
)
from bookstore.orders.tables import IDEMPOTENCY_KEY_MAX_LENGTH

__all__ = ["OrdersController"]

OrderId = Annotated[int, PathParameter(ge=1, le=MAX_BOOK_ID, description="Order id.")]
# app_user.id is a PostgreSQL integer.
_MAX_USER_ID = 2**31 - 1
_DIRECTIONS: dict[str, Literal["after", "before"]] = {"a": "after", "b": "before"}
_DIRECTION_CODES = {name: code for code, name in _DIRECTIONS.items()}
_LIST_PARAMETERS = frozenset({"limit", "cursor", "user_id"})
# The name the signer binds this listing's cursors to: a cursor of the books listing does not open here.
_CURSOR_LISTING = "orders"


def _problem_response(container: type[Any], description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=container, media_type=PROBLEM_MEDIA_TYPE, description=description, generate_examples=False
    )


def _owner_filter(user: CurrentUser) -> int | None:
    """Whose orders the caller may see and change: their own, or anyone's (None) for admins."""
    return None if user.is_admin else user.id


def _cursor(signer: CursorSigner, user_id: int, position: OrderPosition | None) -> str | None:
    if position is None:
        return None
    return signer.sign([user_id, _DIRECTION_CODES[position.direction], position.order_id], listing=_CURSOR_LISTING)


def _position(signer: CursorSigner, cursor: str, user_id: int) -> OrderPosition:
    try:
        listed_user_id, direction, order_id = signer.open(cursor, listing=_CURSOR_LISTING)
    except InvalidCursorError as error:
        raise invalid_input(str(error), key="cursor", source="query") from None
    if listed_user_id != user_id:
        raise invalid_input(
            "belongs to the listing of another user's orders; start again from the first page",
            key="cursor",
            source="query",
        )
    return OrderPosition(_DIRECTIONS[direction], order_id)


class OrdersController(Controller):
    path = ORDERS_PATH
    tags = ["orders"]

    @post(
        operation_id="PlaceOrder",
        summary="Place an order",
        description=(
            "All or nothing: every book's stock is taken in one transaction, or, if any book lacks "
            "stock, nothing changes and the answer is 409 naming each such book with the copies "
            "available. Prices and titles are the catalogue's at the time of the order; the total is "
            "computed by the service. Send an `Idempotency-Key` to retry safely: the same key with the "
            "same items (from the same user, within "
            f"{int(IDEMPOTENCY_KEY_TTL.total_seconds()) // 3600} h) gets the first response again, "
            "with `Idempotent-Replayed: true`, and places nothing; a retry sent while the first request "
            "is still running waits for it and then gets its response. Only a placed order (201) is "
            "remembered: after a 4xx the same key may be sent again. The same key with other items is "
            "refused with 422."
        ),
        before_request=require_json_body,
        response_description="The order placed (or, for a retry with the same `Idempotency-Key`, replayed).",
        response_headers=[
            documented_header("Location", "URL of the order.", example=f"{ORDERS_PATH}/7"),
            documented_header(
                "Idempotent-Replayed",
                "`true` when this is the stored response to an earlier request with the same key.",
                example="true",
            ),
        ],
        responses={
            **problem_responses(400, 401, 413, 415, 422),
            HTTPStatus.NOT_FOUND: _problem_response(UnknownBooksProblem, "Some books do not exist"),
            HTTPStatus.CONFLICT: _problem_response(OutOfStockProblem, "Some books lack stock"),
        },
    )
    async def place_order(
        self,
        request: Request[CurrentUser, Any, Any],
        data: JSONBody[OrderCreate],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                min_length=1,
                max_length=IDEMPOTENCY_KEY_MAX_LENGTH + 2,
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description=(
                    f'1 to {IDEMPOTENCY_KEY_MAX_LENGTH} visible ASCII characters other than `"`, e.g. a UUID; '
                    'also as a quoted string (`"..."`, without `\\`), which names the same key. Keys are per user.'
                ),
            ),
        ] = None,
    ) -> Response[Order]:
        idempotency = None
        if len(request.headers.getall("idempotency-key", [])) > 1:
            # The draft defines one Item: which of several a retry meant is a guess we do not make.
            raise invalid_input("must be given once", key="Idempotency-Key", source="header")
        if idempotency_key is not None:
            idempotency = IdempotentRequest(idempotency_key_of(idempotency_key), request_fingerprint(data))
        placement = await queries.place_order(request.user.id, data, idempotency)
        headers = {"Location": placement.location}
        if placement.replayed:
            headers["Idempotent-Replayed"] = "true"
        # The body is the order's JSON as encoded once (and stored for replays, byte for byte);
        # Litestar sends bytes content as it is.
        response = Response(
            placement.body, status_code=placement.status_code, media_type=MediaType.JSON, headers=headers
        )
        return cast("Response[Order]", response)

    @get(
        operation_id="ListOrders",
        summary="List orders, newest first",
        description=(
            "The caller's orders; an admin may list any user's with `user_id`. Paginated with cursors "
            "only (no `offset`): `next_cursor`/`prev_cursor` of a page, passed back as `cursor`, give "
            "the neighbouring pages (also as `next`/`prev` links in the `Link` header, RFC 8288)."
        ),
        response_headers=[
            documented_header("Link", "RFC 8288 next/prev links.", example=f'<{ORDERS_PATH}?cursor=...>; rel="next"')
        ],
        responses=problem_responses(400, 401, 403),
    )
    async def list_orders(
        self,
        request: Request[CurrentUser, Any, Any],
        page_cursors: NamedDependency[CursorSigner],
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="Page size.")] = 20,
        cursor: Annotated[
            str | None,
            QueryParameter(
                min_length=1,
                max_length=CURSOR_MAX_LENGTH,
                description="`next_cursor` or `prev_cursor` of a page of this listing, valid for a day.",
            ),
        ] = None,
        user_id: Annotated[
            int | None,
            QueryParameter(
                ge=1,
                le=_MAX_USER_ID,
                description="Whose orders (admins only; others may name only themselves). Default: the caller.",
            ),
        ] = None,
    ) -> Response[OrderPage]:
        require_single_values(request, _LIST_PARAMETERS)
        require_canonical_ints(request, "limit", "user_id")
        listed_user_id = request.user.id if user_id is None else user_id
        if listed_user_id != request.user.id and not request.user.is_admin:
            raise PermissionDeniedError("Only admins may list another user's orders.")
        position = None if cursor is None else _position(page_cursors, cursor, listed_user_id)
        listing = await queries.list_orders(listed_user_id, limit, position)
        next_cursor = _cursor(page_cursors, listed_user_id, listing.next_position)
        prev_cursor = _cursor(page_cursors, listed_user_id, listing.prev_position)
        link = cursor_links(request, next_cursor=next_cursor, prev_cursor=prev_cursor)
        return Response(
            OrderPage(items=listing.orders, limit=limit, next_cursor=next_cursor, prev_cursor=prev_cursor),
            headers={"Link": link} if link else None,
        )

    @get(
        "/{order_id:int}",
        operation_id="GetOrder",
        summary="Get one order",
        description="The caller's own order (any order for admins); anyone else's is 404, as if it did not exist.",
        responses=problem_responses(400, 401, 404),
    )
    async def get_order(self, request: Request[CurrentUser, Any, Any], order_id: OrderId) -> Order:
        return await queries.get_order(order_id, _owner_filter(request.user))

    @post(
        "/{order_id:int}/cancel",
        operation_id="CancelOrder",
        summary="Cancel an order",
        description=(
            "For the user who placed it or an admin: a placed order becomes `cancelled` and its books' "
            "stock is returned, exactly once. Cancelling a cancelled order (also twice at the same time) "
            "is 409; someone else's order is 404."
        ),
        status_code=HTTPStatus.OK,
        responses=problem_responses(400, 401, 404, 409),
    )
    async def cancel_order(self, request: Request[CurrentUser, Any, Any], order_id: OrderId) -> Order:
        return await queries.cancel_order(order_id, _owner_filter(request.user))
