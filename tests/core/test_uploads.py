"""read_upload on a test route of the whole app (its RequestBodyGuard and problem+json errors),
through httpx: what it accepts, and how it refuses mistyped, empty, malformed and oversized
bodies, the last without reading more of them than it must."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar import Request, Response, put
from litestar.types import Receive, Scope, Send

from bookstore.app import create_app
from bookstore.core.uploads import MAX_MULTIPART_PARTS, MULTIPART_OVERHEAD_BYTES, read_upload
from tests.conftest import make_settings
from tests.helpers import assert_problem

UPLOAD = "/test-only/upload"
UPLOAD_IMAGE_FIELD = "/test-only/upload-image-field"
# Above the guard's drain limit (max_request_body_bytes, 64 KiB): a refused body that size is
# never read, and the answer closes the connection.
LIMIT = 100 * 1024
CHUNK = 16 * 1024
BOUNDARY = "test-boundary-7d3f"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@put(UPLOAD, exclude_from_auth=True, request_max_body_size=None)
async def upload(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(await read_upload(request, max_bytes=LIMIT), media_type="application/octet-stream")


@put(UPLOAD_IMAGE_FIELD, exclude_from_auth=True, request_max_body_size=None)
async def upload_image_field(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(await read_upload(request, max_bytes=LIMIT, field="image"), media_type="application/octet-stream")


class BodyReadCounter:
    """The app, counting the request body messages it has read."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.body_messages = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                self.body_messages += 1
            return message

        await self.app(scope, counting_receive, send)


@pytest.fixture(scope="module")
def counted_app() -> BodyReadCounter:
    app = create_app(make_settings())
    app.register(upload)
    app.register(upload_image_field)
    return BodyReadCounter(app)


@pytest_asyncio.fixture
async def http(counted_app: BodyReadCounter) -> AsyncIterator[httpx.AsyncClient]:
    counted_app.body_messages = 0
    transport = httpx.ASGITransport(app=counted_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def multipart_body(*parts: tuple[str, bytes], filename: str | None = "cover.png", close: bool = True) -> bytes:
    """A multipart/form-data body with ``parts`` (name, content), delimited by :data:`BOUNDARY`."""
    body = b""
    for name, content in parts:
        headers = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:  # a file part; else a plain form field
            headers += f'; filename="{filename}"\r\nContent-Type: image/png'
        body += f"--{BOUNDARY}\r\n{headers}\r\n\r\n".encode()
        body += content + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def chunks_of(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a streamed body: sent chunked, without Content-Length."""

    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(data), CHUNK):
            yield data[start : start + CHUNK]

    return stream()


def field_error(response: httpx.Response) -> dict[str, Any]:
    """The one invalid input a 400 problem names."""
    errors: list[dict[str, Any]] = assert_problem(response, 400)["errors"]
    assert len(errors) == 1, errors
    return errors[0]


def assert_too_large(response: httpx.Response) -> None:
    assert f"at most {LIMIT} bytes" in assert_problem(response, 413)["detail"]


# --- accepted -------------------------------------------------------------------------------------


async def test_a_multipart_file_part_is_read_byte_for_byte(http: httpx.AsyncClient) -> None:
    data = os.urandom(50_000)
    response = await http.put(UPLOAD, files={"file": ("cover.png", data, "image/png")}, data={"title": "ignored"})
    assert response.status_code == 200, response.text
    assert response.content == data


async def test_a_plain_multipart_part_named_file_is_read(http: httpx.AsyncClient) -> None:
    body = multipart_body(("file", b"plain form value"), filename=None)
    response = await http.put(UPLOAD, content=body, headers={"Content-Type": MULTIPART})
    assert response.status_code == 200, response.text
    assert response.content == b"plain form value"


async def test_other_parts_before_and_after_the_file_are_ignored(http: httpx.AsyncClient) -> None:
    body = multipart_body(("before", b"a" * 1000), ("file", b"the file"), ("after", b"b" * 1000))
    response = await http.put(UPLOAD, content=body, headers={"Content-Type": MULTIPART})
    assert response.status_code == 200, response.text
    assert response.content == b"the file"


async def test_the_part_name_is_the_callers_choice(http: httpx.AsyncClient) -> None:
    response = await http.put(UPLOAD_IMAGE_FIELD, files={"image": ("cover.png", b"png bytes", "image/png")})
    assert response.status_code == 200, response.text
    assert response.content == b"png bytes"


async def test_a_raw_image_body_is_read_whatever_image_type_it_claims(http: httpx.AsyncClient) -> None:
    data = os.urandom(50_000)
    response = await http.put(UPLOAD, content=data, headers={"Content-Type": "image/gif"})
    assert response.status_code == 200, response.text
    assert response.content == data


async def test_a_raw_octet_stream_body_is_read(http: httpx.AsyncClient) -> None:
    data = os.urandom(1000)
    response = await http.put(UPLOAD, content=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    assert response.content == data


async def test_a_chunked_raw_body_is_read(http: httpx.AsyncClient) -> None:
    data = os.urandom(3 * CHUNK + 5)
    response = await http.put(UPLOAD, content=chunks_of(data), headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    assert response.content == data


# --- refused: media type --------------------------------------------------------------------------


async def test_a_text_body_is_unsupported(http: httpx.AsyncClient) -> None:
    response = await http.put(UPLOAD, content=b"hello", headers={"Content-Type": "text/plain"})
    detail = assert_problem(response, 415)["detail"]
    assert "multipart/form-data with a `file` part" in detail
    assert "image/*" in detail


async def test_an_image_type_without_a_subtype_is_unsupported(http: httpx.AsyncClient) -> None:
    response = await http.put(UPLOAD, content=b"\x89PNG\r\n\x1a\n", headers={"Content-Type": "image/"})
    assert_problem(response, 415)


async def test_a_body_without_content_type_is_unsupported(http: httpx.AsyncClient) -> None:
    response = await http.put(UPLOAD, content=b"\x89PNG\r\n\x1a\n")
    assert "content-type" not in response.request.headers
    assert_problem(response, 415)


# --- refused: empty, missing or repeated parts, malformed multipart -------------------------------


async def test_an_empty_raw_body_is_invalid(http: httpx.AsyncClient) -> None:
    response = await http.put(UPLOAD, content=b"", headers={"Content-Type": "image/png"})
    assert field_error(response) == {"message": "is empty; send the file's bytes", "key": None, "source": "body"}


async def test_an_empty_file_part_is_invalid(http: httpx.AsyncClient) -> None:
    response = await http.put(UPLOAD, files={"file": ("cover.png", b"", "image/png")})
    assert field_error(response) == {
        "message": "is empty; send the file's bytes in it",
        "key": "file",
        "source": "body",
    }


async def test_a_multipart_body_without_a_file_part_is_invalid(http: httpx.AsyncClient) -> None:
    response = await http.put(UPLOAD, files={"image": ("cover.png", b"png bytes", "image/png")})
    assert field_error(response) == {"message": "has no `file` part", "key": "file", "source": "body"}


async def test_two_file_parts_are_invalid(http: httpx.AsyncClient) -> None:
    files = [("file", ("a.png", b"first", "image/png")), ("file", ("b.png", b"second", "image/png"))]
    response = await http.put(UPLOAD, files=files)
    assert field_error(response) == {"message": "has more than one `file` part", "key": "file", "source": "body"}


async def test_multipart_without_a_boundary_is_invalid(http: httpx.AsyncClient) -> None:
    response = await http.put(
        UPLOAD, content=multipart_body(("file", b"x")), headers={"Content-Type": "multipart/form-data"}
    )
    assert field_error(response) == {
        "message": "must name the boundary of multipart/form-data",
        "key": "Content-Type",
        "source": "header",
    }


async def test_a_body_that_is_not_multipart_is_invalid(http: httpx.AsyncClient) -> None:
    response = await http.put(UPLOAD, content=b"x" * 200, headers={"Content-Type": MULTIPART})
    error = field_error(response)
    assert error["message"].startswith("is not valid multipart/form-data (")
    assert error["source"] == "body"


async def test_a_part_without_content_disposition_is_invalid(http: httpx.AsyncClient) -> None:
    body = f"--{BOUNDARY}\r\nContent-Type: image/png\r\n\r\nbytes\r\n--{BOUNDARY}--\r\n".encode()
    response = await http.put(UPLOAD, content=body, headers={"Content-Type": MULTIPART})
    assert field_error(response)["message"].startswith("is not valid multipart/form-data (")


async def test_an_unterminated_multipart_body_is_invalid(http: httpx.AsyncClient) -> None:
    response = await http.put(
        UPLOAD, content=multipart_body(("file", b"x" * 100), close=False), headers={"Content-Type": MULTIPART}
    )
    assert field_error(response)["message"] == (
        "is not valid multipart/form-data (Unexpected end of multipart stream (parser closed))"
    )


# --- refused: too large ---------------------------------------------------------------------------


async def test_a_raw_body_of_exactly_the_limit_is_read(http: httpx.AsyncClient) -> None:
    data = os.urandom(LIMIT)
    response = await http.put(UPLOAD, content=data, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    assert response.content == data


async def test_a_multipart_file_of_exactly_the_limit_is_read(http: httpx.AsyncClient) -> None:
    data = os.urandom(LIMIT)
    response = await http.put(UPLOAD, files={"file": ("cover.png", data, "image/png")})
    assert response.status_code == 200, response.text
    assert response.content == data


async def test_a_raw_body_one_byte_over_the_limit_is_refused_unread(
    http: httpx.AsyncClient, counted_app: BodyReadCounter
) -> None:
    response = await http.put(UPLOAD, content=os.urandom(LIMIT + 1), headers={"Content-Type": "image/png"})
    assert_too_large(response)
    assert counted_app.body_messages == 0
    # Not read, so not drained either: the connection cannot be reused.
    assert response.headers["connection"] == "close"


async def test_a_multipart_file_one_byte_over_the_limit_is_refused(http: httpx.AsyncClient) -> None:
    # Content-Length is within the multipart allowance: the part's size is what is over.
    response = await http.put(UPLOAD, files={"file": ("cover.png", os.urandom(LIMIT + 1), "image/png")})
    assert_too_large(response)


async def test_a_multipart_length_over_the_allowance_is_refused_unread(
    http: httpx.AsyncClient, counted_app: BodyReadCounter
) -> None:
    body = multipart_body(("file", b"x" * (LIMIT + MULTIPART_OVERHEAD_BYTES)))
    response = await http.put(UPLOAD, content=body, headers={"Content-Type": MULTIPART})
    assert_too_large(response)
    assert counted_app.body_messages == 0
    assert response.headers["connection"] == "close"


async def test_a_chunked_raw_body_is_refused_as_soon_as_it_passes_the_limit(
    http: httpx.AsyncClient, counted_app: BodyReadCounter
) -> None:
    response = await http.put(UPLOAD, content=chunks_of(os.urandom(4 * LIMIT)), headers={"Content-Type": "image/png"})
    assert_too_large(response)
    # The chunk that would pass the limit is the last one read.
    assert counted_app.body_messages == LIMIT // CHUNK + 1
    assert response.headers["connection"] == "close"


async def test_a_chunked_multipart_body_is_refused_as_soon_as_its_file_passes_the_limit(
    http: httpx.AsyncClient, counted_app: BodyReadCounter
) -> None:
    body = multipart_body(("file", os.urandom(4 * LIMIT)))
    response = await http.put(UPLOAD, content=chunks_of(body), headers={"Content-Type": MULTIPART})
    assert_too_large(response)
    assert counted_app.body_messages == LIMIT // CHUNK + 1


async def test_small_parts_padding_the_body_past_the_allowance_are_refused(
    http: httpx.AsyncClient, counted_app: BodyReadCounter
) -> None:
    # Each part within the file limit, the body over file limit + allowance, sent chunked.
    parts = [("file", b"f"), *((f"pad{n}", b"p" * (LIMIT // 2)) for n in range(MAX_MULTIPART_PARTS - 2))]
    body = multipart_body(*parts)
    assert len(body) > LIMIT + MULTIPART_OVERHEAD_BYTES
    response = await http.put(UPLOAD, content=chunks_of(body), headers={"Content-Type": MULTIPART})
    assert_too_large(response)
    assert counted_app.body_messages < len(body) // CHUNK


async def test_more_parts_than_allowed_are_refused(http: httpx.AsyncClient) -> None:
    parts = [("file", b"f"), *((f"field{n}", b"v") for n in range(MAX_MULTIPART_PARTS))]
    response = await http.put(UPLOAD, content=multipart_body(*parts), headers={"Content-Type": MULTIPART})
    detail = assert_problem(response, 413)["detail"]
    assert f"at most {MAX_MULTIPART_PARTS} parts" in detail
