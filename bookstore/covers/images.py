"""Cover images: recognise an upload as JPEG, PNG or WebP, refuse what is unsafe, strip its
metadata and make its thumbnail.

``process_cover`` is CPU work on bytes, with no I/O and nothing about HTTP besides its two error
classes. It took 30 ms of CPU for a 1200x900 JPEG and 125 ms for a 4000x3000 one (280 ms when that
one must be rotated), so callers run it in a worker thread; Pillow releases the GIL while it
decodes, resizes and encodes. The format is recognised from the bytes,
never from a file name or the client's Content-Type, and only Pillow's JPEG, PNG and WebP decoders
ever see them.

Metadata are stripped losslessly (``covers.metadata``): the stored file is the upload without the
JPEG segments, PNG chunks and WebP chunks that are not on an allow-list, and an upload without
metadata is stored byte for byte. Re-encoding instead would lose quality and cost
0.2-1.4 s of CPU for a large PNG or WebP. The one exception is an image whose EXIF orientation asks
for a rotation: without the tag it would show sideways, so it is rotated and re-encoded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from io import BytesIO
from typing import Any, Final

from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from bookstore.core.errors import DomainError, UnsupportedMediaTypeError
from bookstore.covers.metadata import excessive_structure, strip_jpeg, strip_png, strip_webp
from bookstore.covers.schemas import COVER_CONTENT_TYPES, THUMBNAIL_CONTENT_TYPE

__all__ = [
    "COVER_CONTENT_TYPES",
    "THUMBNAIL_BOX",
    "THUMBNAIL_CONTENT_TYPE",
    "InvalidImageError",
    "ProcessedCover",
    "UnsupportedImageError",
    "process_cover",
]

# Thumbnails fit in this box (width, height), keep the aspect ratio and are never enlarged.
THUMBNAIL_BOX: Final = (400, 600)
_THUMBNAIL_QUALITY = 80
# Quality of a JPEG or WebP re-encoded after it was rotated upright: visually close to the upload.
_REENCODE_QUALITY = 90


@dataclass(frozen=True, slots=True)
class ProcessedCover:
    """An accepted cover: what to store, what it is, and its thumbnail."""

    data: bytes  # what is stored: the upload without its metadata
    content_type: str  # image/jpeg, image/png or image/webp
    extension: str  # jpg, png or webp
    width: int
    height: int
    thumbnail: bytes  # WebP
    thumbnail_width: int
    thumbnail_height: int


class UnsupportedImageError(UnsupportedMediaTypeError):
    """The bytes are not a JPEG, PNG or WebP image (415)."""


class InvalidImageError(DomainError):
    """A JPEG, PNG or WebP image the service refuses: truncated, corrupt, animated or with more
    pixels than the limit (422)."""

    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


@dataclass(frozen=True, slots=True)
class _Format:
    name: str  # also Pillow's name of the encoder
    content_type: str
    extension: str
    strip: Callable[[bytes], bytes]
    reencode_options: Mapping[str, Any]  # Pillow `save` options for an image rotated upright


_JPEG = _Format("JPEG", "image/jpeg", "jpg", strip_jpeg, {"quality": _REENCODE_QUALITY})
_FORMATS = {
    "JPEG": _JPEG,
    # MPO: a JPEG followed by more JPEGs (previews, depth maps), as some cameras write. Its first
    # image is the photo, and stripping keeps only that one.
    "MPO": _JPEG,
    "PNG": _Format("PNG", "image/png", "png", strip_png, {}),
    "WEBP": _Format("WebP", "image/webp", "webp", strip_webp, {"quality": _REENCODE_QUALITY}),
}
# Pillow reaches MPO through the JPEG opener.
_OPENED_FORMATS = ("JPEG", "PNG", "WEBP")
if set(COVER_CONTENT_TYPES) != {kind.content_type for kind in _FORMATS.values()}:
    raise RuntimeError("covers.schemas.COVER_CONTENT_TYPES must list the content types of the formats read here")

# Errors Pillow raises for truncated or corrupt data (and the strippers' ValueError).
# UnidentifiedImageError, an OSError, is handled before them.
_DECODING_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
# EXIF orientations 2-8 each ask for a flip or a rotation (ImageOps.exif_transpose).
_TRANSPOSING_ORIENTATIONS = range(2, 9)
# Modes Pillow resizes with nearest-neighbour only: convert them before the thumbnail is made.
_PALETTE_MODES = frozenset({"1", "P", "PA"})
# Modes whose ICC profile (if any) describes RGB, so it is still right for an RGB thumbnail.
_RGB_MODES = frozenset({"RGB", "RGBA", "RGBX", "P", "PA"})


def process_cover(data: bytes, *, max_pixels: int) -> ProcessedCover:
    """Validates an uploaded cover and returns what to store; blocking CPU work (use a thread).

    Raises ``UnsupportedImageError`` when the bytes are not JPEG, PNG or WebP, and
    ``InvalidImageError`` when the image has more than ``max_pixels`` pixels (checked from the
    header, before anything is decoded) or a structure that would make decoding far costlier than
    its size (``metadata.excessive_structure``), is animated, or is truncated or corrupt.
    """
    if (excess := excessive_structure(data)) is not None:
        raise InvalidImageError(f"The image is refused: {excess}.")
    try:
        # Reads the header only. `formats` keeps Pillow's ~40 other decoders away from the bytes.
        image = Image.open(BytesIO(data), formats=_OPENED_FORMATS)
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError("The file is not a JPEG, PNG or WebP image.") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own limit (179 MP), raised while opening: the 20000x20000 PNG bomb stops here.
        raise _too_many_pixels(max_pixels) from exc
    except _DECODING_ERRORS as exc:  # the WebP decoder rejects truncated files while opening
        raise InvalidImageError("The image data is truncated or corrupt.") from exc
    with image:
        kind = _FORMATS[str(image.format)]  # one of them: `formats` above allows no other
        width, height = image.size
        # Pillow itself refuses only above 179 MP: a 10 KB PNG of 9000x9000 (81 MP) opens without
        # a word and decodes to 81 MB.
        if width * height > max_pixels:
            raise _too_many_pixels(max_pixels, f"{width}x{height}")
        if image.format != "MPO" and getattr(image, "n_frames", 1) > 1:
            raise InvalidImageError("Animated images are not accepted; upload a single frame.")
        try:
            return _process_opened(image, data, kind)
        except _DECODING_ERRORS as exc:
            raise InvalidImageError(f"The {kind.name} data is truncated or corrupt.") from exc


def _process_opened(image: ImageFile.ImageFile, data: bytes, kind: _Format) -> ProcessedCover:
    # A full decode: `verify()` would pass truncated JPEGs; `load()` raises OSError for them.
    image.load()
    upright: Image.Image = image
    if image.getexif().get(ExifTags.Base.Orientation, 1) in _TRANSPOSING_ORIENTATIONS:
        upright = ImageOps.exif_transpose(image)
        encoded = _encode(upright, kind.name, icc_profile=image.info.get("icc_profile"), **kind.reencode_options)
        # Pillow's JPEG encoder copies the source's comment: strip the new file too.
        stored = kind.strip(encoded)
    else:
        stored = kind.strip(data)
    width, height = upright.size
    thumbnail = _make_thumbnail(upright)
    return ProcessedCover(
        data=stored,
        content_type=kind.content_type,
        extension=kind.extension,
        width=width,
        height=height,
        thumbnail=thumbnail.data,
        thumbnail_width=thumbnail.width,
        thumbnail_height=thumbnail.height,
    )


@dataclass(frozen=True, slots=True)
class _Thumbnail:
    data: bytes
    width: int
    height: int


def _make_thumbnail(image: Image.Image) -> _Thumbnail:
    """A WebP of ``image`` that fits in ``THUMBNAIL_BOX``; resizes ``image`` itself when its mode
    allows, sparing a copy of the full-size pixels."""
    icc_profile = image.info.get("icc_profile") if image.mode in _RGB_MODES else None
    if image.mode in _PALETTE_MODES:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    image.thumbnail(THUMBNAIL_BOX)  # in place; reduces by whole factors first, then resamples
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    data = _encode(image, "WEBP", quality=_THUMBNAIL_QUALITY, icc_profile=icc_profile)
    # Pillow's WebP encoder writes no EXIF unless told to, but the resized image still carries the
    # upload's in `info`: stripping (0.03 ms) keeps that true whatever an encoder copies.
    return _Thumbnail(strip_webp(data), image.width, image.height)


def _encode(image: Image.Image, format_name: str, **options: Any) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format_name, **options)
    return buffer.getvalue()


def _too_many_pixels(max_pixels: int, size: str = "") -> InvalidImageError:
    dimensions = f" ({size})" if size else ""
    return InvalidImageError(f"The image{dimensions} has more pixels than the limit of {max_pixels:,}.")
