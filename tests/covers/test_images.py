"""process_cover: which uploads are accepted, what is stored (pixels kept, metadata gone, rotated
upright), the thumbnail, and which uploads are refused with which error."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from http import HTTPStatus
from io import BytesIO
from typing import Any

import pytest
from PIL import ExifTags, Image

from bookstore.core.errors import UnsupportedMediaTypeError
from bookstore.core.storage import STORAGE_EXTENSIONS
from bookstore.covers.images import (
    COVER_CONTENT_TYPES,
    THUMBNAIL_BOX,
    THUMBNAIL_CONTENT_TYPE,
    InvalidImageError,
    ProcessedCover,
    UnsupportedImageError,
    process_cover,
)
from bookstore.covers.metadata import MAX_JPEG_SCANS, MAX_PNG_CHUNKS
from tests.covers.images import (
    CAMERA_MAKE,
    JPEG_COMMENT,
    MARKER_COLOUR,
    PNG_TEXT,
    PRIVATE_CHUNK_PAYLOAD,
    TRAILER,
    XMP_PACKET,
    animated,
    bomb_png,
    decoded,
    encode,
    gif_bytes,
    jpeg_bytes,
    large_png,
    mpo_bytes,
    one_frame_animation,
    picture,
    png_bytes,
    rotated,
    srgb_profile,
    text_file,
    truncated,
    webp_chunk,
    webp_chunks,
    webp_of_chunks,
    with_jpeg_segment,
    with_metadata,
)

MAX_PIXELS = 25_000_000
FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp")}
GPS_IFD = 0x8825
HIDDEN_PAYLOAD = b"<?php system($_GET['c']); ?> or anything else a decoder skips"
METADATA_INFO_KEYS = ("exif", "xmp", "XML:com.adobe.xmp", "comment", "Comment", "Description")


def process(data: bytes, *, max_pixels: int = MAX_PIXELS) -> ProcessedCover:
    return process_cover(data, max_pixels=max_pixels)


def is_marker_colour(pixel: Any) -> bool:
    """Whether a decoded RGB pixel is (lossy-compression close to) the picture's red marker."""
    return all(abs(value - expected) < 60 for value, expected in zip(pixel, MARKER_COLOUR, strict=True))


def assert_upright(image: Image.Image) -> None:
    """The red marker is in the top-left corner and nowhere else a transposition would move it."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    assert is_marker_colour(rgb.getpixel((2, 2)))
    for corner in ((width - 3, 2), (2, height - 3), (width - 3, height - 3)):
        assert not is_marker_colour(rgb.getpixel(corner))


@pytest.mark.parametrize(
    ("format_name", "mode", "options"),
    [
        ("JPEG", "RGB", {}),
        ("JPEG", "RGB", {"progressive": True}),
        ("JPEG", "RGB", {"restart_marker_rows": 1}),
        ("JPEG", "L", {}),
        ("JPEG", "CMYK", {}),
        ("PNG", "RGB", {}),
        ("PNG", "RGBA", {"optimize": True}),
        ("PNG", "P", {}),
        ("PNG", "L", {}),
        ("PNG", "LA", {}),
        ("PNG", "1", {}),
        ("PNG", "I;16", {}),
        ("WEBP", "RGB", {}),
        ("WEBP", "RGBA", {}),
        ("WEBP", "RGB", {"lossless": True}),
    ],
)
def test_image_without_metadata_is_stored_byte_for_byte(format_name: str, mode: str, options: dict[str, Any]) -> None:
    data = encode(picture(120, 90, mode=mode), format_name, **options)

    cover = process(data)

    assert cover.data == data
    assert (cover.content_type, cover.extension) == FORMATS[format_name]
    assert (cover.width, cover.height) == (120, 90)
    thumbnail = decoded(cover.thumbnail)
    assert thumbnail.format == "WEBP"
    assert thumbnail.size == (cover.thumbnail_width, cover.thumbnail_height) == (120, 90)


@pytest.mark.parametrize("format_name", FORMATS)
def test_metadata_are_removed_and_pixels_and_icc_profile_kept(format_name: str) -> None:
    data = with_metadata(format_name)
    original = decoded(data)
    assert original.getexif().get_ifd(GPS_IFD)  # the upload does carry a GPS position
    assert CAMERA_MAKE.encode() in data

    cover = process(data)

    stored = decoded(cover.data)
    assert stored.tobytes() == original.tobytes()
    assert stored.info["icc_profile"] == srgb_profile()
    assert not stored.getexif()
    assert not stored.getexif().get_ifd(GPS_IFD)
    assert not set(METADATA_INFO_KEYS) & set(stored.info)
    for secret in (CAMERA_MAKE.encode(), XMP_PACKET, JPEG_COMMENT, PNG_TEXT.encode(), PRIVATE_CHUNK_PAYLOAD):
        assert secret not in cover.data


@pytest.mark.parametrize("format_name", FORMATS)
def test_thumbnail_carries_no_metadata(format_name: str) -> None:
    cover = process(with_metadata(format_name))

    thumbnail = decoded(cover.thumbnail)
    assert not thumbnail.getexif()
    assert not set(METADATA_INFO_KEYS) & set(thumbnail.info)
    assert CAMERA_MAKE.encode() not in cover.thumbnail


@pytest.mark.parametrize("format_name", FORMATS)
def test_bytes_after_the_end_of_the_image_are_dropped(format_name: str) -> None:
    data = encode(picture(), format_name)

    cover = process(data + TRAILER)

    assert cover.data == data


def test_jpeg_keeps_only_decoding_jfif_icc_and_adobe_segments() -> None:
    plain = encode(picture(), "JPEG")
    data = with_jpeg_segment(plain, 0xED, b"Photoshop 3.0\x00" + HIDDEN_PAYLOAD)  # APP13: IPTC
    data = with_jpeg_segment(data, 0xEF, b"vendor " + HIDDEN_PAYLOAD, fill_bytes=3)  # APP15
    data = with_jpeg_segment(data, 0xE0, b"JFXX\x00\x10" + HIDDEN_PAYLOAD)  # JFIF extension: a thumbnail

    cover = process(data)

    assert cover.data == plain


def test_webp_keeps_only_image_chunks_and_icc_profile() -> None:
    plain = encode(picture(), "WEBP", icc_profile=srgb_profile())  # the extended format (VP8X)
    chunks = webp_chunks(plain)
    assert [chunk_type for chunk_type, _ in chunks] == [b"VP8X", b"ICCP", b"VP8 "]

    cover = process(webp_of_chunks([*chunks, (b"UNKN", HIDDEN_PAYLOAD)]))

    assert cover.data == plain


def test_webp_animation_format_with_one_frame_keeps_that_frame_only() -> None:
    data = one_frame_animation(frame_extra=webp_chunk(b"UNKN", HIDDEN_PAYLOAD))
    assert b"ANIM" in data
    assert HIDDEN_PAYLOAD in data

    cover = process(data)

    assert decoded(cover.data).tobytes() == decoded(data).tobytes()
    assert HIDDEN_PAYLOAD not in cover.data
    assert len(cover.data) == len(data) - len(webp_chunk(b"UNKN", HIDDEN_PAYLOAD))


@pytest.mark.parametrize(
    ("format_name", "orientation"),
    [("JPEG", orientation) for orientation in range(2, 9)] + [("PNG", 6), ("WEBP", 6), ("WEBP", 8)],
)
def test_image_with_exif_orientation_is_stored_upright(format_name: str, orientation: int) -> None:
    data = rotated(format_name, orientation, width=90, height=120)
    assert decoded(data).getexif()[ExifTags.Base.Orientation] == orientation

    cover = process(data)

    stored = decoded(cover.data)
    assert stored.format == format_name
    assert stored.size == (cover.width, cover.height) == (90, 120)
    assert_upright(stored)
    assert not stored.getexif()
    assert stored.info["icc_profile"] == srgb_profile()
    assert JPEG_COMMENT not in cover.data
    assert CAMERA_MAKE.encode() not in cover.data
    assert_upright(decoded(cover.thumbnail))


def test_image_with_orientation_1_is_not_reencoded() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 1

    cover = process(encode(picture(), "JPEG", exif=exif))

    assert cover.data == encode(picture(), "JPEG")


@pytest.mark.parametrize(
    ("size", "thumbnail_size"),
    [((1200, 900), (400, 300)), ((600, 1800), (200, 600)), ((800, 1200), (400, 600)), ((120, 90), (120, 90))],
)
def test_thumbnail_is_a_webp_that_fits_the_box(size: tuple[int, int], thumbnail_size: tuple[int, int]) -> None:
    cover = process(jpeg_bytes(*size))

    thumbnail = decoded(cover.thumbnail)
    assert thumbnail.format == "WEBP"
    assert thumbnail.size == (cover.thumbnail_width, cover.thumbnail_height) == thumbnail_size
    assert thumbnail.width <= THUMBNAIL_BOX[0]
    assert thumbnail.height <= THUMBNAIL_BOX[1]
    assert_upright(thumbnail)


def test_thumbnail_keeps_transparency() -> None:
    cover = process(encode(picture(mode="RGBA"), "PNG"))

    assert decoded(cover.thumbnail).mode == "RGBA"


def test_mpo_is_stored_as_its_first_jpeg() -> None:
    data = mpo_bytes()
    first_image = Image.open(BytesIO(data))
    assert first_image.format == "MPO"
    assert getattr(first_image, "n_frames", 1) == 2

    cover = process(data)

    stored = Image.open(BytesIO(cover.data))
    assert stored.format == "JPEG"
    assert cover.content_type == "image/jpeg"
    assert stored.tobytes() == first_image.tobytes()
    assert len(cover.data) < len(data) // 2 + 1000  # the second image is gone


def test_formats_are_those_the_storage_accepts() -> None:
    assert {extension for _, extension in FORMATS.values()} == set(STORAGE_EXTENSIONS)
    assert set(COVER_CONTENT_TYPES) == {content_type for content_type, _ in FORMATS.values()}
    assert THUMBNAIL_CONTENT_TYPE == "image/webp"


def _all_but_last_byte(data: bytes) -> bytes:
    return data[:-1]


def _half(data: bytes) -> bytes:
    return truncated(data, 0.5)


def _ninety_percent(data: bytes) -> bytes:
    return truncated(data, 0.9)


@pytest.mark.parametrize("format_name", FORMATS)
@pytest.mark.parametrize("cut", [_half, _ninety_percent, _all_but_last_byte])
def test_truncated_image_is_invalid(format_name: str, cut: Callable[[bytes], bytes]) -> None:
    data = cut(encode(picture(400, 300), format_name))

    with pytest.raises(InvalidImageError, match="truncated or corrupt") as raised:
        process(data)

    assert raised.value.status_code == HTTPStatus.UNPROCESSABLE_ENTITY


def test_decompression_bomb_is_refused_naming_the_limit() -> None:
    with pytest.raises(InvalidImageError, match="more pixels than the limit of 25,000,000"):
        process(bomb_png())


def test_image_with_more_pixels_than_the_limit_is_refused_before_decoding() -> None:
    # 81 MP: under Pillow's own limit, so only the service's check stands between it and a decode.
    with pytest.raises(InvalidImageError, match=r"\(9000x9000\) has more pixels than the limit of 25,000,000"):
        process(large_png())


def test_pixel_limit_is_inclusive() -> None:
    data = png_bytes(120, 90)

    assert process(data, max_pixels=120 * 90).width == 120
    with pytest.raises(InvalidImageError, match="limit of 10,799"):
        process(data, max_pixels=120 * 90 - 1)


@pytest.mark.parametrize("format_name", ["WEBP", "PNG"])
def test_animated_image_is_refused(format_name: str) -> None:
    with pytest.raises(InvalidImageError, match="Animated images are not accepted"):
        process(animated(format_name))


@pytest.mark.parametrize(
    "data",
    [gif_bytes(), text_file(), b"", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"\xff\xd8\xff"],
    ids=["gif", "text", "empty", "png-signature-only", "webp-header-only", "jpeg-start-only"],
)
def test_other_content_is_an_unsupported_media_type(data: bytes) -> None:
    with pytest.raises(UnsupportedImageError, match="not a JPEG, PNG or WebP image") as raised:
        process(data)

    assert isinstance(raised.value, UnsupportedMediaTypeError)
    assert raised.value.status_code == HTTPStatus.UNSUPPORTED_MEDIA_TYPE


def _with_repeated_last_scan(jpeg: bytes, repeats: int) -> bytes:
    """A progressive JPEG whose last scan comes ``repeats`` more times: each makes the decoder
    walk the whole image again."""
    last_scan = jpeg.rindex(b"\xff\xda")
    end_of_image = jpeg.rindex(b"\xff\xd9")
    return jpeg[:end_of_image] + jpeg[last_scan:end_of_image] * repeats + jpeg[end_of_image:]


def test_a_jpeg_with_more_scans_than_accepted_is_refused_before_decoding() -> None:
    progressive = encode(picture(64, 48), "JPEG", progressive=True)
    accepted = _with_repeated_last_scan(progressive, MAX_JPEG_SCANS - progressive.count(b"\xff\xda"))
    assert process_cover(accepted, max_pixels=MAX_PIXELS).width == 64
    with pytest.raises(InvalidImageError, match=f"more than the {MAX_JPEG_SCANS} accepted"):
        process_cover(_with_repeated_last_scan(progressive, MAX_JPEG_SCANS), max_pixels=MAX_PIXELS)


def _with_empty_chunks(png: bytes, count: int) -> bytes:
    """The PNG with ``count`` empty private chunks after its header chunk."""
    header_end = 8 + 8 + 13 + 4  # signature, IHDR's length and type, its 13 bytes, its CRC
    chunk = struct.pack(">I", 0) + b"prIv" + struct.pack(">I", zlib.crc32(b"prIv"))
    return png[:header_end] + chunk * count + png[header_end:]


def test_a_png_of_more_chunks_than_accepted_is_refused_before_decoding() -> None:
    png = encode(picture(8, 8), "PNG")
    chunks = 3  # IHDR, IDAT, IEND
    assert process_cover(_with_empty_chunks(png, MAX_PNG_CHUNKS - chunks), max_pixels=MAX_PIXELS).width == 8
    with pytest.raises(InvalidImageError, match="chunks accepted"):
        process_cover(_with_empty_chunks(png, MAX_PNG_CHUNKS - chunks + 1), max_pixels=MAX_PIXELS)
