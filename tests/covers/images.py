"""Test images built with Pillow: well-formed covers in each format, covers full of metadata, and
the hostile or broken uploads the service must refuse.

Everything is generated in memory, deterministically; the larger builders are cached.
"""

from __future__ import annotations

import struct
import zlib
from functools import cache
from io import BytesIO
from typing import Any

from PIL import Image, ImageCms, ImageDraw
from PIL.PngImagePlugin import PngInfo

# What the metadata builders embed, so tests can look for it in the stored bytes.
CAMERA_MAKE = "SpyCam 3000"
GPS_LATITUDE = (52.0, 31.0, 12.5)
XMP_PACKET = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description GPSLatitude="52,31.2N"/></x:xmpmeta>'
JPEG_COMMENT = b"uploaded from the secret lab"
PNG_TEXT = "Author: someone who would rather stay anonymous"
PRIVATE_CHUNK_PAYLOAD = b"a private chunk no decoder reads"
MARKER_COLOUR = (255, 0, 0)
# Appended after the end of an image, as polyglot files do (here: the start of a ZIP archive).
TRAILER = b"PK\x03\x04 hidden payload after the image"


def picture(width: int = 120, height: int = 90, *, mode: str = "RGB") -> Image.Image:
    """A deterministic picture with gradients (so encoders have something to compress) and a red
    square in its top-left corner (so tests can tell which way up it is)."""
    horizontal = Image.linear_gradient("L").resize((width, height))
    vertical = Image.linear_gradient("L").rotate(90).resize((width, height))
    radial = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", [horizontal, vertical, radial])
    ImageDraw.Draw(image).rectangle((0, 0, width // 4, height // 4), fill=MARKER_COLOUR)
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((width, height)))
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def encode(image: Image.Image, format_name: str, **options: Any) -> bytes:
    """``image`` saved in ``format_name`` (JPEG, PNG, WEBP, GIF, MPO ...) with Pillow's options."""
    buffer = BytesIO()
    image.save(buffer, format_name, **options)
    return buffer.getvalue()


def jpeg_bytes(width: int = 120, height: int = 90, **options: Any) -> bytes:
    return encode(picture(width, height), "JPEG", **options)


def png_bytes(width: int = 120, height: int = 90, **options: Any) -> bytes:
    return encode(picture(width, height), "PNG", **options)


def webp_bytes(width: int = 120, height: int = 90, **options: Any) -> bytes:
    return encode(picture(width, height), "WEBP", **options)


def decoded(data: bytes) -> Image.Image:
    """The decoded image of ``data``."""
    image = Image.open(BytesIO(data))
    image.load()
    return image


@cache
def srgb_profile() -> bytes:
    """An ICC profile (sRGB), which a stored cover must keep."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_with_gps(*, orientation: int | None = None) -> Image.Exif:
    """EXIF with a camera make, a GPS position and, if given, an orientation."""
    exif = Image.Exif()
    exif[0x010F] = CAMERA_MAKE  # Make
    exif[0x8825] = {1: "N", 2: GPS_LATITUDE, 3: "E", 4: (13.0, 24.0, 36.0)}  # GPSInfo
    if orientation is not None:
        exif[0x0112] = orientation
    return exif


def metadata_options(format_name: str) -> dict[str, Any]:
    """Pillow save options that embed EXIF with GPS, XMP, an ICC profile and, where the format
    has them, a comment (JPEG) or text chunks and a private chunk (PNG)."""
    options: dict[str, Any] = {"exif": exif_with_gps().tobytes(), "icc_profile": srgb_profile()}
    if format_name == "PNG":  # PNG keeps XMP in an iTXt chunk, next to the other text chunks
        text = PngInfo()
        text.add_text("Comment", PNG_TEXT)
        text.add_text("Description", PNG_TEXT, zip=True)
        text.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
        text.add(b"prVt", PRIVATE_CHUNK_PAYLOAD)
        options["pnginfo"] = text
    else:
        options["xmp"] = XMP_PACKET
    if format_name == "JPEG":
        options["comment"] = JPEG_COMMENT
    return options


def with_metadata(format_name: str, width: int = 120, height: int = 90) -> bytes:
    """A ``format_name`` image carrying every kind of metadata ``metadata_options`` describes."""
    return encode(picture(width, height), format_name, **metadata_options(format_name))


def rotated(format_name: str, orientation: int = 6, width: int = 90, height: int = 120) -> bytes:
    """A picture that shows ``width`` x ``height`` with the red square top left only once its EXIF
    ``orientation`` is applied, as a phone camera writes it (6: stored turned a quarter to the
    left, displayed turned back to the right). GPS, an ICC profile and a JPEG comment come along."""
    upright = picture(width, height)
    stored = upright.transpose(_INVERSE_ORIENTATION[orientation])
    options: dict[str, Any] = {"exif": exif_with_gps(orientation=orientation).tobytes(), "icc_profile": srgb_profile()}
    if format_name == "JPEG":
        options["comment"] = JPEG_COMMENT
    return encode(stored, format_name, **options)


def truncated(data: bytes, fraction: float = 0.5) -> bytes:
    """The first ``fraction`` of ``data``, as an interrupted upload leaves it."""
    return data[: int(len(data) * fraction)]


def png_of_size(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG of ``width`` x ``height``: a few KB that decode to width*height pixels."""

    def chunk(chunk_type: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", zlib.crc32(chunk_type + payload))
        )

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then the row's bits
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    block = row * rows_per_block
    pixels = [compressor.compress(block) for _ in range(height // rows_per_block)]
    pixels.append(compressor.compress(row * (height % rows_per_block)))
    pixels.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(pixels)) + chunk(b"IEND", b"")


@cache
def bomb_png() -> bytes:
    """The classic decompression bomb: 20000x20000 pixels (400 MP, 400 MB decoded) in ~50 KB."""
    return png_of_size(20_000, 20_000)


@cache
def large_png() -> bytes:
    """9000x9000 (81 MP) in ~10 KB: under Pillow's own limit, which lets it decode silently."""
    return png_of_size(9_000, 9_000)


def gif_bytes() -> bytes:
    """A GIF: a real image, but not a format the service accepts."""
    return encode(picture(), "GIF")


def text_file() -> bytes:
    """Plain text, e.g. a notes.txt renamed cover.png."""
    return b"This is not an image, whatever the file name says.\n" * 20


def animated(format_name: str) -> bytes:
    """A two-frame animated WebP or PNG (APNG)."""
    first, second = picture(), picture().transpose(Image.Transpose.ROTATE_180)
    return encode(first, format_name, save_all=True, append_images=[second], duration=100)


def mpo_bytes() -> bytes:
    """An MPO: a JPEG followed by a second JPEG (as cameras add previews or depth maps)."""
    first, second = picture(), picture().transpose(Image.Transpose.ROTATE_180)
    return encode(first, "MPO", save_all=True, append_images=[second])


def with_jpeg_segment(data: bytes, marker: int, payload: bytes, *, fill_bytes: int = 0) -> bytes:
    """The JPEG ``data`` with a segment inserted after its JFIF (APP0) segment, its marker preceded
    by ``fill_bytes`` 0xFF fill bytes (which the format allows)."""
    assert data[2:4] == b"\xff\xe0", "Pillow writes JFIF first"
    (jfif_length,) = struct.unpack_from(">H", data, 4)
    position = 4 + jfif_length
    segment = b"\xff" * (1 + fill_bytes) + bytes((marker,)) + struct.pack(">H", len(payload) + 2) + payload
    return data[:position] + segment + data[position:]


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level chunks of a WebP file, as (type, payload) pairs."""
    chunks: list[tuple[bytes, bytes]] = []
    position = 12
    while position + 8 <= len(data):
        chunk_type, length = struct.unpack_from("<4sI", data, position)
        chunks.append((chunk_type, data[position + 8 : position + 8 + length]))
        position += 8 + length + (length & 1)
    return chunks


def webp_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    return chunk_type + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def webp_of_chunks(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A WebP file made of ``chunks`` (type, payload), in that order."""
    body = b"WEBP" + b"".join(webp_chunk(chunk_type, payload) for chunk_type, payload in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def one_frame_animation(*, frame_extra: bytes = b"") -> bytes:
    """A WebP in the animation format holding a single frame (so not animated), with
    ``frame_extra`` (whole chunks) appended inside that frame."""
    chunks = webp_chunks(animated("WEBP"))
    frame_indexes = [index for index, (chunk_type, _) in enumerate(chunks) if chunk_type == b"ANMF"]
    for index in reversed(frame_indexes[1:]):
        del chunks[index]
    chunks[frame_indexes[0]] = (b"ANMF", chunks[frame_indexes[0]][1] + frame_extra)
    return webp_of_chunks(chunks)


# The transposition that makes an upright picture into the one a camera stores with each EXIF
# orientation (the inverse of what ImageOps.exif_transpose applies).
_INVERSE_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
