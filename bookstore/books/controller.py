"""HTTP routes of the catalogue: ``/api/v1/books``. Reads are public, writes need a token."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT, HTTP_304_NOT_MODIFIED

from bookstore.accounts.schemas import CurrentUser
from bookstore.books import queries
from bookstore.books.filters import book_cursor, provide_book_filters
from bookstore.books.queries import Actor, BookFilters, PagePosition
from bookstore.books.schemas import TYPE_DECODERS, Book, BookCreate, BookPage, BookUpdate
from bookstore.core.cursors import CursorSigner
from bookstore.core.errors import invalid_input, problem_responses
from bookstore.core.http import (
    cursor_links,
    etag_for_version,
    if_match_versions,
    matches_if_none_match,
    require_json_body,
)
from bookstore.core.openapi import PUBLIC, documented_header
from bookstore.core.storage import FileStorage
from bookstore.covers.queries import release_files

__all__ = ["BOOKS_PATH", "BookId", "BooksController", "actor_of"]

BOOKS_PATH = "/api/v1/books"

# Ids stay far below bigint's 2**63-1; 10**18 is a bound msgspec (int64) and OpenAPI (float,
# exact for 10**18 but not for 2**63-1) both state exactly.
BookId = Annotated[int, PathParameter(ge=1, le=10**18, description="Book id.")]
IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        max_length=1024,
        required=False,
        description='Only write if the book is still at this ETag (e.g. `"3"`); otherwise 412.',
    ),
]
_ETAG_HEADER = documented_header("ETag", "Version of the book.", example='"3"')


def _with_etag(
    book: Book, version: int, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response[Book]:
    return Response(book, status_code=status_code, headers={"ETag": etag_for_version(version), **(headers or {})})


def _given_fields(data: BookCreate | BookUpdate) -> dict[str, Any]:
    """The fields the body sets (field name -> value), leaving out those it omitted."""
    return {name: value for name, value in msgspec.structs.asdict(data).items() if value is not msgspec.UNSET}


def actor_of(request: Request[CurrentUser, Any, Any]) -> Actor:
    """Who is writing, as the books' (and covers') write rules see them."""
    return Actor(user_id=request.user.id, is_admin=request.user.is_admin)


class BooksController(Controller):
    path = BOOKS_PATH
    tags = ["books"]
    type_decoders = TYPE_DECODERS

    @get(
        operation_id="ListBooks",
        summary="List, filter, search and sort books",
        description=(
            "Paginated with cursors: `next_cursor`/`prev_cursor` of a page, passed back as `cursor` "
            "with the same filters and sort, give the neighbouring pages (also as `next`/`prev` "
            "links in the `Link` header, RFC 8288), stable while books are added or removed. "
            "`offset` still works for the first 10,000 matches. `total` counts matches up to 1000. "
            "`q` matches words (and word prefixes) of title and author."
        ),
        exclude_from_auth=True,
        security=PUBLIC,
        response_headers=[
            documented_header("Link", "RFC 8288 next/prev links.", example=f'<{BOOKS_PATH}?cursor=...>; rel="next"')
        ],
        responses=problem_responses(400),
        dependencies={"filters": Provide(provide_book_filters, sync_to_thread=False)},
    )
    async def list_books(
        self,
        request: Request[Any, Any, Any],
        filters: NamedDependency[BookFilters],
        page_cursors: NamedDependency[CursorSigner],
    ) -> Response[BookPage]:
        listing = await queries.list_books(filters)

        def cursor(position: PagePosition | None) -> str | None:
            return None if position is None else book_cursor(page_cursors, filters, position)

        next_cursor, prev_cursor = cursor(listing.next_position), cursor(listing.prev_position)
        link = cursor_links(request, next_cursor=next_cursor, prev_cursor=prev_cursor)
        return Response(
            BookPage(
                items=listing.books,
                total=listing.total,
                limit=filters.limit,
                offset=filters.offset,
                total_exact=listing.total_exact,
                next_cursor=next_cursor,
                prev_cursor=prev_cursor,
            ),
            headers={"Link": link} if link else None,
        )

    @get(
        "/{book_id:int}",
        operation_id="GetBook",
        summary="Get one book",
        description="Answers 304 when `If-None-Match` holds the current ETag.",
        exclude_from_auth=True,
        security=PUBLIC,
        response_headers=[_ETAG_HEADER],
        responses={304: ResponseSpec(data_container=None, description="Not Modified"), **problem_responses(400, 404)},
    )
    async def get_book(
        self,
        book_id: BookId,
        if_none_match: Annotated[
            str | None, HeaderParameter(name="If-None-Match", max_length=1024, required=False)
        ] = None,
    ) -> Response[Book]:
        book, version = await queries.get_book(book_id)
        if matches_if_none_match(if_none_match, version):
            return Response(None, status_code=HTTP_304_NOT_MODIFIED, headers={"ETag": etag_for_version(version)})  # type: ignore[arg-type]
        return _with_etag(book, version)

    @post(
        operation_id="CreateBook",
        summary="Add a book",
        before_request=require_json_body,
        response_headers=[
            _ETAG_HEADER,
            documented_header("Location", "URL of the new book.", example=f"{BOOKS_PATH}/42"),
        ],
        responses=problem_responses(400, 401, 409, 413, 415),
    )
    async def create_book(self, request: Request[CurrentUser, Any, Any], data: JSONBody[BookCreate]) -> Response[Book]:
        book, version = await queries.create_book(data, request.user.id)
        return _with_etag(book, version, HTTP_201_CREATED, {"Location": f"{BOOKS_PATH}/{book.id}"})

    @put(
        "/{book_id:int}",
        operation_id="ReplaceBook",
        summary="Replace a book",
        description="For the user who added the book or an admin. `If-Match` makes the write conditional.",
        before_request=require_json_body,
        response_headers=[_ETAG_HEADER],
        responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 415),
    )
    async def replace_book(
        self,
        request: Request[CurrentUser, Any, Any],
        book_id: BookId,
        data: JSONBody[BookCreate],
        if_match: IfMatch = None,
    ) -> Response[Book]:
        # A PUT without `stock` leaves it alone: clients written before stock existed must not zero it.
        book, version = await queries.update_book(
            book_id, _given_fields(data), actor_of(request), if_match_versions(if_match)
        )
        return _with_etag(book, version)

    @patch(
        "/{book_id:int}",
        operation_id="UpdateBook",
        summary="Change some fields of a book",
        description="Absent fields stay as they are. Same permissions and `If-Match` rules as PUT.",
        before_request=require_json_body,
        response_headers=[_ETAG_HEADER],
        responses=problem_responses(400, 401, 403, 404, 409, 412, 413, 415),
    )
    async def update_book(
        self,
        request: Request[CurrentUser, Any, Any],
        book_id: BookId,
        data: JSONBody[BookUpdate],
        if_match: IfMatch = None,
    ) -> Response[Book]:
        changes = _given_fields(data)
        if not changes:
            raise invalid_input("name at least one field to change", key=None, source="body")
        book, version = await queries.update_book(book_id, changes, actor_of(request), if_match_versions(if_match))
        return _with_etag(book, version)

    @delete(
        "/{book_id:int}",
        operation_id="DeleteBook",
        summary="Delete a book",
        description="For the user who added the book or an admin. `If-Match` makes the delete conditional.",
        status_code=HTTP_204_NO_CONTENT,
        responses=problem_responses(400, 401, 403, 404, 412),
    )
    async def delete_book(
        self,
        request: Request[CurrentUser, Any, Any],
        book_id: BookId,
        cover_storage: NamedDependency[FileStorage],
        if_match: IfMatch = None,
    ) -> None:
        cover_keys = await queries.delete_book(book_id, actor_of(request), if_match_versions(if_match))
        await release_files(cover_storage, cover_keys)
