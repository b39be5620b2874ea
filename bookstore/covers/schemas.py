"""Response bodies of the covers API and the URLs covers are served under."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from msgspec import Meta, Struct

__all__ = [
    "COVER_CONTENT_TYPES",
    "COVER_PATH",
    "THUMBNAIL_CONTENT_TYPE",
    "Cover",
    "CoverSize",
    "cover_url",
    "cover_version",
]

COVER_PATH: Final = "/api/v1/books/{book_id:int}/cover"
# What a stored cover may be, and its thumbnails are.
COVER_CONTENT_TYPES: Final = ("image/jpeg", "image/png", "image/webp")
THUMBNAIL_CONTENT_TYPE: Final = "image/webp"
# Hex digits of the content hash in a cover URL's `v`: enough that two covers of one book never
# share a URL (2**64), short enough to read.
_VERSION_LENGTH: Final = 16
CoverSize = Literal["full", "thumbnail"]


def cover_version(key: str) -> str:
    """The ``v`` of the URLs of the stored file ``key``: the start of its content hash."""
    return key[:_VERSION_LENGTH]


def cover_url(book_id: int, key: str, size: CoverSize = "full") -> str:
    """The URL of a book's cover (or thumbnail) as stored under ``key``.

    It names the content (``v``), so it changes whenever the cover does and a response to it may
    be cached for good; the same path without ``v`` (or with an old one) always gives the current
    cover, revalidated by its ETag.
    """
    size_parameter = "&size=thumbnail" if size == "thumbnail" else ""
    return f"/api/v1/books/{book_id}/cover?v={cover_version(key)}{size_parameter}"


class Cover(Struct):
    """What a book's cover is."""

    content_type: Annotated[str, Meta(description="image/jpeg, image/png or image/webp.")]
    width: Annotated[int, Meta(description="Pixels.")]
    height: Annotated[int, Meta(description="Pixels.")]
    size: Annotated[int, Meta(description="Bytes.")]
    url: Annotated[str, Meta(description="Where the image is served; changes whenever the cover does.")]
    thumbnail_url: Annotated[str, Meta(description="A WebP at most 400x600 pixels.")]
