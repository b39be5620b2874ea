"""HTTP routes of book covers: ``/api/v1/books/{book_id}/cover``. Reading is public; uploading and
deleting are for the book's creator or an admin."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Final

import anyio
import anyio.to_thread
from litestar import Controller, Request, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Encoding,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    RequestBody,
    Schema,
)
from litestar.params import HeaderParameter, QueryParameter
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT, HTTP_304_NOT_MODIFIED

from bookstore.accounts.schemas import CurrentUser
from bookstore.books.controller import BOOKS_PATH, BookId, actor_of
from bookstore.books.queries import require_changeable
from bookstore.core.errors import problem_responses
from bookstore.core.files import file_response
from bookstore.core.http import if_none_match_names
from bookstore.core.openapi import PUBLIC, documented_header
from bookstore.core.storage import FileStorage
from bookstore.core.uploads import read_upload
from bookstore.covers import queries
from bookstore.covers.schemas import (
    COVER_CONTENT_TYPES,
    COVER_PATH,
    THUMBNAIL_CONTENT_TYPE,
    Cover,
    CoverSize,
    cover_version,
)

__all__ = ["CoverLimits", "CoversController"]

# Decoding holds the whole image in memory, several times over while it is rotated and
# thumbnailed (~10 bytes a pixel at peak): one at a time per worker bounds the memory uploads take.
_DECODES: Final = anyio.CapacityLimiter(1)
# A URL that names the content (`v`) always gets the same bytes; the bare URL may change.
_CACHE_FOREVER: Final = "public, max-age=31536000, immutable"
_REVALIDATE: Final = "public, no-cache"
_BINARY: Final = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


@dataclass(frozen=True, slots=True)
class CoverLimits:
    """The largest upload (bytes) and image (pixels) a cover may be."""

    max_bytes: int
    max_pixels: int


@dataclass
class _UploadCoverOperation(Operation):
    """Documents the body the handler reads itself (``read_upload``): Litestar only documents a
    ``data`` parameter, and one cannot take both multipart and raw bodies. Also the 201's headers."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description=(
                "A JPEG, PNG or WebP image (recognised from its bytes, not its name or type), as the `file` "
                "part of a multipart/form-data body or as the whole body."
            ),
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.OBJECT, required=["file"], properties={"file": _BINARY}),
                    encoding={"file": Encoding(content_type=", ".join(COVER_CONTENT_TYPES))},
                ),
                **{content_type: OpenAPIMediaType(schema=_BINARY) for content_type in COVER_CONTENT_TYPES},
                "application/octet-stream": OpenAPIMediaType(schema=_BINARY),
            },
        )
        # `response_headers` land on the default status (200) only and a ResponseSpec takes no
        # headers, yet the first cover's 201 carries the same Location.
        responses = self.responses or {}
        replaced, created = responses.get("200"), responses.get("201")
        if isinstance(replaced, OpenAPIResponse) and isinstance(created, OpenAPIResponse):
            created.headers = replaced.headers


@dataclass
class _ServeCoverOperation(Operation):
    """Documents the image a handler returning a raw ASGI response sends."""

    def __post_init__(self) -> None:
        headers: dict[str, OpenAPIHeader | Reference] = {
            name: OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description=description)
            for name, description in (
                ("ETag", "The SHA-256 of the image."),
                ("Cache-Control", "`immutable` for a URL whose `v` names the current image, else `no-cache`."),
            )
        }
        self.responses = {
            **(self.responses or {}),
            "200": OpenAPIResponse(
                description="The image.",
                content={content_type: OpenAPIMediaType(schema=_BINARY) for content_type in COVER_CONTENT_TYPES},
                headers=headers,
            ),
            "304": OpenAPIResponse(description="Not Modified: `If-None-Match` names the image.", headers=headers),
        }


class CoversController(Controller):
    path = COVER_PATH
    tags = ["books"]

    @put(
        operation_id="UploadCover",
        summary="Upload or replace a book's cover",
        description=(
            "For the user who added the book or an admin. 201 when the book had no cover, 200 when it "
            "replaced one. EXIF, XMP and comments are stripped; a server-made thumbnail comes with it."
        ),
        operation_class=_UploadCoverOperation,
        # read_upload enforces the covers' own limit; the app-wide body limit is for JSON.
        request_max_body_size=None,
        response_headers=[
            documented_header("Location", "URL of the cover.", example=f"{BOOKS_PATH}/42/cover?v=0123456789abcdef")
        ],
        responses={
            HTTP_201_CREATED: ResponseSpec(data_container=Cover, description="The book's first cover."),
            **problem_responses(400, 401, 403, 404, 408, 413, 415, 422),
        },
    )
    async def upload_cover(
        self,
        request: Request[CurrentUser, Any, Any],
        book_id: BookId,
        cover_storage: NamedDependency[FileStorage],
        cover_limits: NamedDependency[CoverLimits],
    ) -> Response[Cover]:
        # Imported by the first upload, not when the app starts: Pillow adds ~11 MiB to a worker,
        # which most workers of a catalogue serving reads would carry for nothing.
        from bookstore.covers.images import process_cover

        actor = actor_of(request)
        # Before a byte of the body is read: refused uploads cost nothing.
        await require_changeable(book_id, actor)
        data = await read_upload(request, max_bytes=cover_limits.max_bytes)
        image = await anyio.to_thread.run_sync(
            partial(process_cover, data, max_pixels=cover_limits.max_pixels), limiter=_DECODES
        )
        stored, previous = await queries.replace_cover(book_id, actor, image, cover_storage)
        cover = stored.to_cover(book_id)
        status = HTTP_201_CREATED if previous is None else HTTP_200_OK
        return Response(cover, status_code=status, headers={"Location": cover.url})

    @get(
        operation_id="GetCover",
        summary="Get a book's cover image",
        description=(
            "The image as uploaded (metadata stripped), or with `size=thumbnail` a WebP at most 400x600. "
            "Use the `url`/`cover_url` the API gives: its `v` names the image, so it may be cached for good."
        ),
        exclude_from_auth=True,
        security=PUBLIC,
        operation_class=_ServeCoverOperation,
        responses=problem_responses(400, 404),
    )
    async def get_cover(
        self,
        request: Request[Any, Any, Any],
        book_id: BookId,
        cover_storage: NamedDependency[FileStorage],
        size: Annotated[CoverSize, QueryParameter(description="`full` (default) or `thumbnail`.")] = "full",
        v: Annotated[
            str | None,
            QueryParameter(pattern="^[0-9a-f]{16}$", description="The image version, as in the cover's URL."),
        ] = None,
        if_none_match: Annotated[
            str | None, HeaderParameter(name="If-None-Match", max_length=1024, required=False)
        ] = None,
    ) -> ASGIResponse:
        cover = await queries.get_cover(book_id)
        if size == "full":
            key, length, content_type = cover.key, cover.size, cover.content_type
        else:
            key, length, content_type = cover.thumbnail_key, cover.thumbnail_size, THUMBNAIL_CONTENT_TYPE
        headers = {
            "ETag": f'"{key.partition(".")[0]}"',
            "Cache-Control": _CACHE_FOREVER if v == cover_version(key) else _REVALIDATE,
        }
        if if_none_match_names(if_none_match, headers["ETag"]):
            return ASGIResponse(status_code=HTTP_304_NOT_MODIFIED, headers=headers.items())
        path = cover_storage.path(key)
        return await file_response(request, path, size=length, media_type=content_type, headers=headers)

    @delete(
        operation_id="DeleteCover",
        summary="Delete a book's cover",
        description="For the user who added the book or an admin.",
        status_code=HTTP_204_NO_CONTENT,
        responses=problem_responses(400, 401, 403, 404),
    )
    async def delete_cover(
        self, request: Request[CurrentUser, Any, Any], book_id: BookId, cover_storage: NamedDependency[FileStorage]
    ) -> None:
        await queries.remove_cover(book_id, actor_of(request), cover_storage)
