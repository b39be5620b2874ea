"""Covers through a live ``bookstore serve`` (Granian, one worker, 127.0.0.1): the image is sent by
the server from its file (ASGI path send) with the API's headers, HEAD gives those headers alone,
and uploading a large image does not stop the worker from answering other requests meanwhile."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from bookstore.core.storage import LocalFileStorage
from tests.covers.conftest import cover_path
from tests.covers.images import encode, picture, png_bytes
from tests.helpers import PASSWORD, bearer, book_payload, unique_email
from tests.servers import BookstoreProcess

CACHE_FOREVER = "public, max-age=31536000, immutable"
# Generous bounds for a busy 2-core machine; a run takes well under a second each.
REQUEST_TIMEOUT_SECONDS = 30.0
_logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookstoreProcess]:
    # One worker: one event loop, so a decode blocking it would stall every other request.
    server = BookstoreProcess(tmp_path_factory.mktemp("covers-live"), workers=1)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def storage(server: BookstoreProcess) -> LocalFileStorage:
    """The server's cover storage (its default place: ``<data dir>/covers``)."""
    return LocalFileStorage(Path(server.env["BOOKSTORE_DATA_DIR"]) / "covers")


@pytest.fixture
async def http(server: BookstoreProcess, app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    # `app`: the test session's database setup, and the tables emptied afterwards.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
        yield client


async def owner_and_book(http: httpx.AsyncClient) -> tuple[dict[str, str], int]:
    email = unique_email()
    assert (await http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})).status_code == 201
    login = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = bearer(login.json()["access_token"])
    created = await http.post("/api/v1/books", json=book_payload(), headers=headers)
    assert created.status_code == 201, created.text
    book_id: int = created.json()["id"]
    return headers, book_id


async def test_granian_serves_the_cover_byte_for_byte_with_its_headers(http: httpx.AsyncClient) -> None:
    headers, book_id = await owner_and_book(http)
    # Over Granian's 128 KiB read size: several reads of the file make up the body.
    data = png_bytes(2000, 2000)
    assert len(data) > 128 * 1024
    uploaded = await http.put(cover_path(book_id), files={"file": ("c.png", data, "image/png")}, headers=headers)
    assert uploaded.status_code == 201, uploaded.text
    url = uploaded.json()["url"]

    response = await http.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert response.headers["cache-control"] == CACHE_FOREVER

    head = await http.head(url)
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "content-length", "etag", "cache-control"):
        assert head.headers[name] == response.headers[name]
    # The connection is intact after the HEAD: no stray body bytes precede the next response.
    again = await http.get(url, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_granian_sends_the_file_by_path_not_through_python(
    http: httpx.AsyncClient, storage: LocalFileStorage
) -> None:
    headers, book_id = await owner_and_book(http)
    data = png_bytes()
    uploaded = await http.put(cover_path(book_id), content=data, headers={**headers, "Content-Type": "image/png"})
    assert uploaded.status_code == 201, uploaded.text
    # Observable difference between the two ways of serving (bookstore/core/files.py): with path
    # send the app never opens the file, so a file gone from under it gets Granian's own bare 404;
    # the in-Python fallback would answer a problem+json 404 instead.
    storage.delete(f"{hashlib.sha256(data).hexdigest()}.png")
    response = await http.get(cover_path(book_id))
    assert response.status_code == 404
    assert not response.headers.get("content-type", "").startswith("application/problem+json")
    assert "etag" not in response.headers


async def test_reads_keep_being_served_while_a_large_upload_is_decoded(http: httpx.AsyncClient) -> None:
    """While one worker decodes, strips and thumbnails a 12-megapixel PNG (~0.2-0.7 s of CPU, far
    longer than a book read), a client reading a book in a loop keeps getting answers.

    If the decode ran on the event loop, the worker could not answer anything for its whole
    duration: the read in flight when it starts would take about as long as the upload itself,
    and only the few reads that fit in the upload's I/O waits would complete. With the decode in a
    worker thread the loop stays free: reads keep completing one after another, each far quicker
    than the upload. Both properties are asserted, so a pass does not hang on a single timing.
    """
    headers, book_id = await owner_and_book(http)
    book_url = f"/api/v1/books/{book_id}"
    large = encode(picture(4000, 3000), "PNG")
    assert (await http.get(book_url)).status_code == 200  # connections and statements warmed up
    durations: list[float] = []
    upload = asyncio.create_task(
        http.put(cover_path(book_id), content=large, headers={**headers, "Content-Type": "image/png"})
    )
    upload_started = time.monotonic()
    while not upload.done():
        started = time.monotonic()
        response = await http.get(book_url)
        assert response.status_code == 200
        if not upload.done():  # completed while the upload was still in flight
            durations.append(time.monotonic() - started)
    upload_seconds = time.monotonic() - upload_started
    uploaded = await upload
    assert uploaded.status_code == 201, uploaded.text
    assert (uploaded.json()["width"], uploaded.json()["height"]) == (4000, 3000)
    _logger.info(
        "upload %.3f s; %d reads meanwhile, the longest %.3f s", upload_seconds, len(durations), max(durations)
    )
    assert len(durations) >= 10, (upload_seconds, durations)
    assert max(durations) < upload_seconds / 2, (upload_seconds, durations)
