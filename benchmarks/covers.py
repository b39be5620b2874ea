"""The covers the ``get_cover`` scenario reads: photo-like JPEGs generated with Pillow and uploaded
through the API (``PUT /api/v1/books/{id}/cover``, as the run's admin) to books spread over the
catalogue, before the timed runs; the URLs the app answered with (``url``: the cacheable form,
with ``v``) go to a file for the Lua script.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

from benchmarks import RunError
from bookstore.testing import HttpServer

__all__ = ["COVER_BOOKS", "COVER_HEIGHT", "COVER_WIDTH", "CoverSet", "cover_book_ids", "cover_jpeg", "upload_covers"]

COVER_BOOKS = 20  # books given a cover (each its own image); wrk picks one at random per request
# A typical cover scan: 1200x900 at JPEG quality 80, ~105 KB with the noise below (measured).
COVER_WIDTH, COVER_HEIGHT = 1200, 900
_QUALITY = 80
# Smooth gradients plus blurred noise and a few shapes: a JPEG about the size of a photo's, where
# gradients alone would compress to a few KB and pure noise to ~1 MB.
_NOISE_SCALE, _NOISE_SHARE, _SHAPES = 8, 0.2, 12


@dataclass(frozen=True)
class CoverSet:
    """The uploaded covers: their URLs, the file (one URL a line) the Lua script reads, and the
    size of each image as stored."""

    urls: list[str]
    urls_file: Path
    sizes: list[int]


def cover_jpeg(seed: int) -> bytes:
    """A deterministic 1200x900 JPEG of about 105 KB, different for each ``seed``."""
    rng = random.Random(seed)  # noqa: S311 - picture content, not a secret
    size = (COVER_WIDTH, COVER_HEIGHT)
    gradients = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize(size),
            Image.linear_gradient("L").rotate(90).resize(size),
            Image.radial_gradient("L").resize(size),
        ],
    )
    small = (COVER_WIDTH // _NOISE_SCALE, COVER_HEIGHT // _NOISE_SCALE)
    noise = Image.frombytes("RGB", small, rng.randbytes(small[0] * small[1] * 3))
    picture = Image.blend(gradients, noise.resize(size, Image.Resampling.BICUBIC), _NOISE_SHARE)
    draw = ImageDraw.Draw(picture)
    for _ in range(_SHAPES):
        left, top = rng.randrange(COVER_WIDTH), rng.randrange(COVER_HEIGHT)
        box = (left, top, left + rng.randrange(50, 300), top + rng.randrange(50, 300))
        draw.ellipse(box, fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    buffer = BytesIO()
    picture.save(buffer, "JPEG", quality=_QUALITY)
    return buffer.getvalue()


def cover_book_ids(min_id: int, max_id: int, count: int = COVER_BOOKS) -> list[int]:
    """``count`` book ids spread evenly over ``min_id..max_id``, the first one included."""
    step = (max_id - min_id + 1) / count
    return sorted({min_id + int(index * step) for index in range(count)})


def upload_covers(app: HttpServer, token: str, min_id: int, max_id: int, directory: Path) -> CoverSet:
    """Give ``COVER_BOOKS`` books a cover each, through the API; their URLs, written to ``directory``."""
    urls, sizes = [], []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=app.base_url, headers=headers, timeout=30.0) as client:
        for book_id in cover_book_ids(min_id, max_id):
            image = cover_jpeg(book_id)
            files = {"file": ("cover.jpg", image, "image/jpeg")}
            response = client.put(f"/api/v1/books/{book_id}/cover", files=files)
            if response.status_code != 201:
                raise RunError(f"cover upload to book {book_id}: {response.status_code} {response.text[:300]}")
            cover = response.json()
            urls.append(cover["url"])
            sizes.append(cover["size"])
    urls_file = directory / "cover-urls.txt"
    urls_file.write_text("".join(f"{url}\n" for url in urls))
    return CoverSet(urls, urls_file, sizes)
