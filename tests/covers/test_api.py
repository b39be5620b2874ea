"""Covers API over HTTP (in process, real PostgreSQL, real files in the test's own directory):
upload in each format and body shape, serving with its caching headers, the book's
``cover_url``, who may do what, and every refused upload as a problem+json 4xx with nothing stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.covers.conftest import Covers, cover_path
from tests.covers.images import (
    CAMERA_MAKE,
    JPEG_COMMENT,
    XMP_PACKET,
    animated,
    bomb_png,
    decoded,
    gif_bytes,
    jpeg_bytes,
    large_png,
    png_bytes,
    text_file,
    truncated,
    webp_bytes,
    with_metadata,
)
from tests.helpers import Account, assert_problem

BOOKS = "/api/v1/books"
CACHE_FOREVER = "public, max-age=31536000, immutable"
REVALIDATE = "public, no-cache"
FORMATS = [
    pytest.param(jpeg_bytes, "image/jpeg", "jpg", id="jpeg"),
    pytest.param(png_bytes, "image/png", "png", id="png"),
    pytest.param(webp_bytes, "image/webp", "webp", id="webp"),
]
GPS_INFO_TAG = 0x8825
MAKE_TAG = 0x010F


def quoted_sha256(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()}"'


def version_of(data: bytes) -> str:
    """The ``v`` of the URL of a cover stored as ``data``."""
    return hashlib.sha256(data).hexdigest()[:16]


async def book_with_owner(covers: Covers) -> tuple[int, Account]:
    owner = await covers.api.account()
    book: dict[str, Any] = await covers.api.create_book(owner)
    return book["id"], owner


async def uploaded(covers: Covers, book_id: int, data: bytes, account: Account, **options: Any) -> dict[str, Any]:
    response = await covers.upload(book_id, data, account, **options)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def chunks_of(data: bytes, size: int, pulled: list[int]) -> AsyncIterator[bytes]:
    """``data`` as a chunked request body (no Content-Length), counting in ``pulled`` how many
    chunks the app has asked for."""
    for start in range(0, len(data), size):
        pulled.append(start)
        yield data[start : start + size]


# --- upload and read back ---------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "content_type", "extension"), FORMATS)
@pytest.mark.parametrize("raw", [False, True], ids=["multipart", "raw"])
async def test_upload_creates_the_cover_and_get_returns_it_byte_for_byte(
    covers: Covers, build: Callable[..., bytes], content_type: str, extension: str, raw: bool
) -> None:
    book_id, owner = await book_with_owner(covers)
    data = build(160, 120)
    # The declared type and file name are deliberately wrong: the bytes decide.
    response = await covers.upload(
        book_id,
        data,
        owner,
        raw=raw,
        content_type="application/octet-stream" if raw else "text/plain",
        filename="x.txt",
    )
    assert response.status_code == 201, response.text
    cover = response.json()
    digest = hashlib.sha256(data).hexdigest()
    assert cover["url"] == f"{cover_path(book_id)}?v={digest[:16]}"
    assert cover == {
        "content_type": content_type,
        "width": 160,
        "height": 120,
        "size": len(data),
        "url": cover["url"],
        "thumbnail_url": cover["thumbnail_url"],
    }
    assert cover["thumbnail_url"].startswith(f"{cover_path(book_id)}?v=")
    assert cover["thumbnail_url"].endswith("&size=thumbnail")
    assert response.headers["location"] == cover["url"]
    # Stored under its content key, never under the client's name.
    stored = covers.directory / digest[:2] / digest[2:4] / f"{digest}.{extension}"
    assert stored.read_bytes() == data
    assert "x.txt" not in covers.files()

    served = await covers.api.get(cover["url"])
    assert served.status_code == 200
    assert served.content == data  # an upload without metadata is stored as it came
    assert served.headers["content-type"] == content_type
    assert served.headers["content-length"] == str(len(data))
    assert served.headers["etag"] == quoted_sha256(data)
    assert served.headers["cache-control"] == CACHE_FOREVER


async def test_replacing_a_cover_answers_200_with_the_new_one(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    first = await covers.upload(book_id, png_bytes(), owner)
    assert first.status_code == 201
    replacement = jpeg_bytes(90, 120)
    second = await covers.upload(book_id, replacement, owner)
    assert second.status_code == 200, second.text
    assert second.json()["content_type"] == "image/jpeg"
    assert (second.json()["width"], second.json()["height"]) == (90, 120)
    assert second.json()["url"] != first.json()["url"]
    served = await covers.api.get(cover_path(book_id))
    assert served.content == replacement


async def test_a_jpeg_with_exif_gps_is_stored_and_served_without_it(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    upload = with_metadata("JPEG")
    assert decoded(upload).getexif().get(MAKE_TAG) == CAMERA_MAKE  # the test image really has it
    cover = await uploaded(covers, book_id, upload, owner, content_type="image/jpeg")
    served = (await covers.api.get(cover["url"])).content
    (on_disk,) = (path for path in covers.directory.rglob("*.jpg"))
    for data in (served, on_disk.read_bytes()):
        exif = decoded(data).getexif()
        assert GPS_INFO_TAG not in exif
        assert MAKE_TAG not in exif
        assert CAMERA_MAKE.encode() not in data
        assert XMP_PACKET not in data
        assert JPEG_COMMENT not in data
        assert decoded(data).info.get("icc_profile")  # colour management is not metadata
    # Stripped, not re-encoded: the same pixels.
    assert decoded(served).tobytes() == decoded(upload).tobytes()


@pytest.mark.parametrize("format_name", ["PNG", "WEBP"])
async def test_png_and_webp_metadata_is_stripped_too(covers: Covers, format_name: str) -> None:
    book_id, owner = await book_with_owner(covers)
    upload = with_metadata(format_name)
    cover = await uploaded(covers, book_id, upload, owner)
    served = (await covers.api.get(cover["url"])).content
    assert CAMERA_MAKE.encode() not in served
    assert XMP_PACKET not in served
    assert GPS_INFO_TAG not in decoded(served).getexif()
    assert decoded(served).tobytes() == decoded(upload).tobytes()


# --- serving: caching headers, conditional requests, thumbnails, HEAD --------------------------------


async def test_a_served_cover_must_not_be_sniffed(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    cover = await uploaded(covers, book_id, png_bytes(), owner)
    for url in (cover["url"], cover["thumbnail_url"]):
        assert (await covers.api.get(url)).headers.get("x-content-type-options") == "nosniff"


async def test_get_without_v_or_with_a_stale_v_must_revalidate(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    old = await uploaded(covers, book_id, png_bytes(), owner)
    new_data = webp_bytes()
    await uploaded(covers, book_id, new_data, owner)
    for url in (cover_path(book_id), old["url"]):
        response = await covers.api.get(url)
        assert response.status_code == 200
        # The current image, which the URL does not name: a cache must ask again next time.
        assert response.content == new_data
        assert response.headers["cache-control"] == REVALIDATE
        assert response.headers["etag"] == quoted_sha256(new_data)


@pytest.mark.parametrize("tag_format", ["{}", "W/{}", '"other", {}', "*"])
async def test_if_none_match_naming_the_image_is_not_modified(covers: Covers, tag_format: str) -> None:
    book_id, owner = await book_with_owner(covers)
    data = jpeg_bytes()
    cover = await uploaded(covers, book_id, data, owner)
    response = await covers.api.get(cover["url"], headers={"If-None-Match": tag_format.format(quoted_sha256(data))})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == quoted_sha256(data)
    assert response.headers["cache-control"] == CACHE_FOREVER
    unversioned = await covers.api.get(cover_path(book_id), headers={"If-None-Match": quoted_sha256(data)})
    assert unversioned.status_code == 304
    assert unversioned.headers["cache-control"] == REVALIDATE


async def test_if_none_match_naming_an_older_image_gets_the_current_one(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    old_data, new_data = png_bytes(), png_bytes(80, 80)
    await uploaded(covers, book_id, old_data, owner)
    await uploaded(covers, book_id, new_data, owner)
    response = await covers.api.get(cover_path(book_id), headers={"If-None-Match": quoted_sha256(old_data)})
    assert response.status_code == 200
    assert response.content == new_data


async def test_thumbnail_is_a_webp_within_400_by_600(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    cover = await uploaded(covers, book_id, jpeg_bytes(1200, 900), owner)
    response = await covers.api.get(cover["thumbnail_url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["etag"] == quoted_sha256(response.content)
    assert response.headers["cache-control"] == CACHE_FOREVER
    thumbnail = decoded(response.content)
    assert thumbnail.format == "WEBP"
    assert thumbnail.size == (400, 300)  # fitted into the box, aspect ratio kept
    unversioned = await covers.api.get(cover_path(book_id), params={"size": "thumbnail"})
    assert unversioned.content == response.content
    assert unversioned.headers["cache-control"] == REVALIDATE
    # The thumbnail's `v` does not make the full image's URL immutable, nor the other way round.
    full_with_thumbnail_v = await covers.api.get(cover_path(book_id), params={"v": version_of(response.content)})
    assert full_with_thumbnail_v.headers["cache-control"] == REVALIDATE


async def test_a_small_image_keeps_its_size_as_thumbnail(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    cover = await uploaded(covers, book_id, png_bytes(60, 40), owner)
    thumbnail = decoded((await covers.api.get(cover["thumbnail_url"])).content)
    assert thumbnail.size == (60, 40)


@pytest.mark.parametrize(
    "params", [{"size": "bad"}, {"size": ""}, {"v": "xyz"}, {"v": "0123456789ABCDEF"}, {"v": "0" * 17}]
)
async def test_bad_query_parameters_are_400_problems(covers: Covers, params: dict[str, str]) -> None:
    book_id, owner = await book_with_owner(covers)
    await uploaded(covers, book_id, png_bytes(), owner)
    assert_problem(await covers.api.get(cover_path(book_id), params=params), 400)


async def test_head_gives_the_headers_of_get_without_the_body(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    data = webp_bytes()
    cover = await uploaded(covers, book_id, data, owner)
    head = await covers.api.head(cover["url"])
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(data))
    assert head.headers["content-type"] == "image/webp"
    assert head.headers["etag"] == quoted_sha256(data)
    assert head.headers["cache-control"] == CACHE_FOREVER


async def test_get_of_a_cover_is_public(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    data = png_bytes()
    await uploaded(covers, book_id, data, owner)
    response = await covers.api.get(cover_path(book_id), headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.content == data


# --- the book's representation --------------------------------------------------------------------


async def test_book_representations_carry_the_cover_url_and_a_new_etag(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    book_url = f"{BOOKS}/{book_id}"
    before = await covers.api.get(book_url)
    assert before.json()["cover_url"] is None
    cover = await uploaded(covers, book_id, png_bytes(), owner)

    after_upload = await covers.api.get(book_url)
    assert after_upload.json()["cover_url"] == cover["url"]
    assert after_upload.headers["etag"] != before.headers["etag"]
    # A client holding the old representation revalidates and gets the new one.
    revalidated = await covers.api.get(book_url, headers={"If-None-Match": before.headers["etag"]})
    assert revalidated.status_code == 200
    listed = await covers.api.get(BOOKS)
    assert [book["cover_url"] for book in listed.json()["items"] if book["id"] == book_id] == [cover["url"]]
    patched = await covers.api.patch(book_url, json={"title": "Covered"}, headers=owner.headers)
    assert patched.json()["cover_url"] == cover["url"]

    replaced = await uploaded(covers, book_id, jpeg_bytes(), owner)
    after_replace = await covers.api.get(book_url)
    assert after_replace.json()["cover_url"] == replaced["url"] != cover["url"]
    assert after_replace.headers["etag"] != patched.headers["etag"]

    deleted = await covers.api.delete(cover_path(book_id), headers=owner.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    after_delete = await covers.api.get(book_url)
    assert after_delete.json()["cover_url"] is None
    assert after_delete.headers["etag"] != after_replace.headers["etag"]
    assert_problem(await covers.api.get(cover_path(book_id)), 404)
    assert_problem(await covers.api.get(cover["url"]), 404)


# --- who may upload and delete --------------------------------------------------------------------


async def test_a_non_owner_is_forbidden_before_the_body_is_read(covers: Covers) -> None:
    book_id, _ = await book_with_owner(covers)
    stranger = await covers.api.account()
    pulled: list[int] = []
    body = chunks_of(png_bytes(2000, 2000), 64 * 1024, pulled)
    response = await covers.api.put(
        cover_path(book_id), content=body, headers={**stranger.headers, "Content-Type": "image/png"}
    )
    assert_problem(response, 403)
    assert pulled == []  # not a chunk of the image was asked for
    assert covers.files() == set()
    multipart = await covers.upload(book_id, png_bytes(), stranger)
    assert_problem(multipart, 403)
    assert covers.files() == set()


async def test_an_anonymous_upload_is_401_and_not_read(covers: Covers) -> None:
    book_id, _ = await book_with_owner(covers)
    pulled: list[int] = []
    body = chunks_of(png_bytes(), 1024, pulled)
    response = await covers.api.put(cover_path(book_id), content=body, headers={"Content-Type": "image/png"})
    assert_problem(response, 401)
    assert pulled == []
    assert covers.files() == set()


async def test_a_non_owner_and_anonymous_may_not_delete(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    data = png_bytes()
    await uploaded(covers, book_id, data, owner)
    stranger = await covers.api.account()
    assert_problem(await covers.api.delete(cover_path(book_id), headers=stranger.headers), 403)
    assert_problem(await covers.api.delete(cover_path(book_id)), 401)
    assert (await covers.api.get(cover_path(book_id))).content == data


async def test_an_admin_may_upload_and_delete_anyones_cover(covers: Covers, admin: Account) -> None:
    book_id, _ = await book_with_owner(covers)
    response = await covers.upload(book_id, jpeg_bytes(), admin)
    assert response.status_code == 201, response.text
    assert (await covers.api.delete(cover_path(book_id), headers=admin.headers)).status_code == 204
    assert covers.files() == set()


async def test_a_missing_book_is_404_for_every_method(covers: Covers) -> None:
    owner = await covers.api.account()
    assert_problem(await covers.upload(987_654, png_bytes(), owner), 404)
    assert_problem(await covers.api.get(cover_path(987_654)), 404)
    assert_problem(await covers.api.delete(cover_path(987_654), headers=owner.headers), 404)
    assert covers.files() == set()


async def test_a_book_without_a_cover_has_nothing_to_get_or_delete(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    assert_problem(await covers.api.get(cover_path(book_id)), 404)
    assert_problem(await covers.api.get(cover_path(book_id), params={"size": "thumbnail"}), 404)
    assert_problem(await covers.api.delete(cover_path(book_id), headers=owner.headers), 404)


# --- refused uploads: the right problem, nothing stored ---------------------------------------------


async def assert_refused(covers: Covers, book_id: int, response: httpx.Response, status: int) -> dict[str, Any]:
    """``response`` is a ``status`` problem, and the book still has no cover, on disk or in its row."""
    problem = assert_problem(response, status)
    assert covers.files() == set()
    assert (await covers.api.get(f"{BOOKS}/{book_id}")).json()["cover_url"] is None
    return problem


@pytest.mark.parametrize(
    ("build", "content_type"),
    [
        pytest.param(text_file, "image/png", id="text-renamed-png"),
        pytest.param(gif_bytes, "image/gif", id="gif"),
        pytest.param(lambda: b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", id="svg"),
        pytest.param(lambda: b"%PDF-1.4\n" + png_bytes(), "image/png", id="pdf-with-a-png-inside"),
    ],
)
@pytest.mark.parametrize("raw", [False, True], ids=["multipart", "raw"])
async def test_bytes_that_are_not_jpeg_png_or_webp_are_415(
    covers: Covers, build: Callable[[], bytes], content_type: str, raw: bool
) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.upload(book_id, build(), owner, content_type=content_type, raw=raw)
    await assert_refused(covers, book_id, response, 415)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_of_another_media_type_is_415(covers: Covers, content_type: str) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.upload(book_id, png_bytes(), owner, content_type=content_type, raw=True)
    await assert_refused(covers, book_id, response, 415)


async def test_a_json_body_is_415(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.api.put(cover_path(book_id), json={"file": "aGVsbG8="}, headers=owner.headers)
    await assert_refused(covers, book_id, response, 415)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: truncated(jpeg_bytes(400, 300)), id="truncated-jpeg"),
        pytest.param(lambda: truncated(png_bytes(400, 300)), id="truncated-png"),
        pytest.param(lambda: truncated(webp_bytes(400, 300), 0.7), id="truncated-webp"),
        pytest.param(lambda: jpeg_bytes()[:600] + b"\x00" * 2000 + jpeg_bytes()[2600:], id="corrupt-jpeg"),
        pytest.param(bomb_png, id="bomb-png-20000x20000"),
        pytest.param(large_png, id="png-9000x9000-over-the-default-pixel-limit"),
    ],
)
async def test_broken_or_oversized_images_are_422(covers: Covers, build: Callable[[], bytes]) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.upload(book_id, build(), owner)
    await assert_refused(covers, book_id, response, 422)


async def test_an_image_over_the_configured_pixel_limit_is_422(make_covers: Callable[..., Awaitable[Covers]]) -> None:
    covers = await make_covers(cover_max_pixels=10_000)
    book_id, owner = await book_with_owner(covers)
    assert (await covers.upload(book_id, png_bytes(100, 100), owner)).status_code == 201
    await covers.api.delete(cover_path(book_id), headers=owner.headers)
    response = await covers.upload(book_id, png_bytes(101, 100), owner)
    problem = await assert_refused(covers, book_id, response, 422)
    assert "101x100" in problem["detail"]
    assert "10,000" in problem["detail"]


@pytest.fixture
async def small_limit_covers(make_covers: Callable[..., Awaitable[Covers]]) -> Covers:
    return await make_covers(cover_max_bytes=2048)


async def test_an_image_of_exactly_the_size_limit_is_accepted(small_limit_covers: Covers) -> None:
    covers = small_limit_covers
    book_id, owner = await book_with_owner(covers)
    data = png_bytes(16, 16)
    padded = data + b"\x00" * (2048 - len(data))  # bytes after IEND: decoders ignore them
    assert len(padded) == 2048
    response = await covers.upload(book_id, padded, owner, raw=True)
    assert response.status_code == 201, response.text


def request_body(image: bytes, *, raw: bool) -> tuple[bytes, str]:
    """The body and Content-Type of an upload of ``image``: raw, or as a multipart ``file`` part."""
    if raw:
        return image, "image/png"
    request = httpx.Request("PUT", "/", files={"file": ("cover.png", image, "image/png")})
    return request.read(), request.headers["content-type"]


@pytest.mark.parametrize("raw", [False, True], ids=["multipart", "raw"])
async def test_a_body_announced_over_the_limit_is_413_before_it_is_read(small_limit_covers: Covers, raw: bool) -> None:
    covers = small_limit_covers
    book_id, owner = await book_with_owner(covers)
    # Over the 64 KiB the connection guard would drain after an early answer to keep the
    # connection: what is pulled is what the upload reader read.
    body, content_type = request_body(png_bytes(2000, 2000), raw=raw)
    pulled: list[int] = []
    response = await covers.api.put(
        cover_path(book_id),
        content=chunks_of(body, 4096, pulled),
        headers={**owner.headers, "Content-Type": content_type, "Content-Length": str(len(body))},
    )
    await assert_refused(covers, book_id, response, 413)
    assert pulled == []


@pytest.mark.parametrize("raw", [False, True], ids=["multipart", "raw"])
async def test_a_chunked_body_over_the_limit_is_413_once_it_passes_it(small_limit_covers: Covers, raw: bool) -> None:
    covers = small_limit_covers
    book_id, owner = await book_with_owner(covers)
    image = png_bytes(400, 300)
    assert len(image) > 20 * 1024
    body, content_type = request_body(image, raw=raw)
    pulled: list[int] = []
    response = await covers.api.put(
        cover_path(book_id),
        content=chunks_of(body, 512, pulled),
        headers={**owner.headers, "Content-Type": content_type},
    )
    assert "content-length" not in response.request.headers
    await assert_refused(covers, book_id, response, 413)
    # Reading stopped once the limit (plus the multipart overhead allowance) was passed.
    assert len(pulled) * 512 <= 2048 + 16 * 1024 + 512
    assert len(pulled) < len(body) // 512


@pytest.mark.parametrize("raw", [False, True], ids=["multipart", "raw"])
async def test_an_empty_file_is_400(covers: Covers, raw: bool) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.upload(book_id, b"", owner, raw=raw)
    await assert_refused(covers, book_id, response, 400)


async def test_a_put_without_a_body_is_a_problem(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.api.put(cover_path(book_id), headers=owner.headers)
    await assert_refused(covers, book_id, response, 415)


async def test_a_multipart_body_without_a_file_part_is_400(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.upload(book_id, png_bytes(), owner, field="image")
    problem = await assert_refused(covers, book_id, response, 400)
    assert "file" in str(problem)


async def test_a_multipart_body_with_two_file_parts_is_400(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    files = [("file", ("a.png", png_bytes(), "image/png")), ("file", ("b.png", jpeg_bytes(), "image/jpeg"))]
    response = await covers.api.put(cover_path(book_id), files=files, headers=owner.headers)
    await assert_refused(covers, book_id, response, 400)


async def test_other_form_fields_beside_the_file_are_ignored(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    data = jpeg_bytes()
    response = await covers.api.put(
        cover_path(book_id),
        data={"caption": "front"},
        files={"file": ("c.jpg", data, "image/jpeg")},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert (await covers.api.get(cover_path(book_id))).content == data


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("multipart/form-data", b"--x\r\n", id="no-boundary"),
        pytest.param("multipart/form-data; boundary=x", b"garbage without boundaries", id="no-parts"),
        pytest.param(
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="file"\r\n\r\n\x89PNG',
            id="unterminated",
        ),
    ],
)
async def test_malformed_multipart_is_400(covers: Covers, content_type: str, body: bytes) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.api.put(
        cover_path(book_id), content=body, headers={**owner.headers, "Content-Type": content_type}
    )
    await assert_refused(covers, book_id, response, 400)


async def test_an_animated_webp_is_422(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    response = await covers.upload(book_id, animated("WEBP"), owner)
    await assert_refused(covers, book_id, response, 422)


async def test_a_refused_replacement_keeps_the_current_cover(covers: Covers) -> None:
    book_id, owner = await book_with_owner(covers)
    data = png_bytes()
    cover = await uploaded(covers, book_id, data, owner)
    files_before = covers.files()
    for refused, status in ((text_file(), 415), (truncated(jpeg_bytes()), 422), (b"", 400)):
        assert_problem(await covers.upload(book_id, refused, owner), status)
    assert covers.files() == files_before
    assert (await covers.api.get(f"{BOOKS}/{book_id}")).json()["cover_url"] == cover["url"]
    assert (await covers.api.get(cover["url"])).content == data
