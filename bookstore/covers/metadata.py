"""The structure of JPEG, PNG and WebP files: bounds on the work a file asks of a decoder, and
lossless metadata stripping by allow-list.

Each function returns its input without the segments or chunks that are not on its allow-list,
and raises ValueError when the structure is broken. It runs on bytes Pillow has already decoded.
ICC profiles and everything the decoder needs stay; EXIF (with GPS), XMP, comments, text chunks
and any bytes after the end of the image go, and the pixels are untouched.
"""

from __future__ import annotations

import struct

__all__ = ["MAX_JPEG_SCANS", "MAX_PNG_CHUNKS", "excessive_structure", "strip_jpeg", "strip_png", "strip_webp"]

_JPEG_START = b"\xff\xd8"
_JPEG_START_OF_SCAN = b"\xff\xda"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bounds on decoding work that the pixel limit does not cover, checked before any decoder runs. A
# progressive JPEG is decoded whole again for each scan (~30 ms a scan at 25 MP: 1,000 repeated
# scans, 190 KB, took 30 s of CPU); encoders write at most a few dozen. Pillow reads PNG chunks one
# by one in Python, holding the GIL (437,000 empty chunks in 5 MB took 2.5 s); 8 KB image chunks,
# libpng's default, make 6,400 for a 50 MiB file.
MAX_JPEG_SCANS = 64
MAX_PNG_CHUNKS = 10_000


def excessive_structure(data: bytes) -> str | None:
    """Why decoding ``data`` would cost far more than its size suggests (too many JPEG scans or PNG
    chunks), or None. Cheap: a byte count for JPEG, at most ``MAX_PNG_CHUNKS`` steps for PNG."""
    if data.startswith(_JPEG_START):
        # 0xFF is always followed by 0x00 inside entropy-coded data, so this counts markers (an
        # EXIF thumbnail's scan included).
        scans = data.count(_JPEG_START_OF_SCAN)
        if scans > MAX_JPEG_SCANS:
            return f"it has {scans} scans, more than the {MAX_JPEG_SCANS} accepted"
    elif data.startswith(_PNG_SIGNATURE):
        position, chunks = len(_PNG_SIGNATURE), 0
        while position + 8 <= len(data):
            chunks += 1
            if chunks > MAX_PNG_CHUNKS:
                return f"it has more than the {MAX_PNG_CHUNKS:,} chunks accepted"
            (length,) = struct.unpack_from(">I", data, position)
            position += 12 + length
    return None


_JPEG_END_MARKER = 0xD9
_JPEG_SCAN_MARKER = 0xDA
# Segments the decoder needs: SOFn, DHT, DAC (C0-CF); SOS, DQT, DNL, DRI, DHP, EXP (DA-DF).
_JPEG_KEPT_MARKERS = frozenset(range(0xC0, 0xD0)) | frozenset(range(0xDA, 0xE0))
# APPn segments kept by identifier: JFIF (APP0), the ICC profile (APP2, maybe split over several
# segments) and Adobe (APP14: tells the decoder how to convert CMYK and YCCK colours).
_JPEG_KEPT_APPLICATION_SEGMENTS = {0xE0: b"JFIF\x00", 0xE2: b"ICC_PROFILE\x00", 0xEE: b"Adobe"}


def strip_jpeg(data: bytes) -> bytes:
    """The JPEG with only decoding segments, JFIF, ICC and Adobe; it ends at the first
    end-of-image marker, which drops trailers and, in MPO files, the images after the first."""
    if not data.startswith(_JPEG_START):
        raise ValueError("JPEG: no start-of-image marker")
    kept = [_JPEG_START]
    position, size = len(_JPEG_START), len(data)
    while True:
        if position >= size or data[position] != 0xFF:
            raise ValueError("JPEG: marker expected")
        while position < size and data[position] == 0xFF:  # 0xFF fill bytes may precede a marker
            position += 1
        if position >= size:
            raise ValueError("JPEG: truncated marker")
        marker = data[position]
        position += 1
        if marker == _JPEG_END_MARKER:
            kept.append(bytes((0xFF, marker)))
            return b"".join(kept)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # RSTn and TEM have no segment
            kept.append(bytes((0xFF, marker)))
            continue
        if position + 2 > size:
            raise ValueError("JPEG: truncated segment")
        (length,) = struct.unpack_from(">H", data, position)
        segment_end = position + length
        if length < 2 or segment_end > size:
            raise ValueError("JPEG: bad segment length")
        identifier = _JPEG_KEPT_APPLICATION_SEGMENTS.get(marker)
        if marker in _JPEG_KEPT_MARKERS or (
            identifier is not None and data.startswith(identifier, position + 2, segment_end)
        ):
            kept.append(bytes((0xFF, marker)) + data[position:segment_end])
        position = segment_end
        if marker == _JPEG_SCAN_MARKER:
            position = _jpeg_scan_end(data, segment_end)
            kept.append(data[segment_end:position])


def _jpeg_scan_end(data: bytes, position: int) -> int:
    """Where the entropy-coded data after a SOS segment ends: at the first marker that is not a
    stuffed zero (FF00), a restart marker (FFD0-FFD7) or a fill byte."""
    while True:
        candidate = data.find(b"\xff", position)
        if candidate < 0 or candidate + 1 >= len(data):
            raise ValueError("JPEG: truncated scan")
        following = data[candidate + 1]
        if following == 0xFF:
            position = candidate + 1
        elif following == 0x00 or 0xD0 <= following <= 0xD7:
            position = candidate + 2
        else:
            return candidate


# Chunks that decide how the pixels look. eXIf, tEXt, zTXt, iTXt (XMP), tIME and private chunks
# go, and so do acTL, fcTL and fdAT: animations are refused, and a one-frame APNG is its IDAT.
_PNG_KEPT_CHUNKS = frozenset(
    {
        *(b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS"),
        *(b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"cICP", b"mDCV", b"cLLI"),
        *(b"pHYs", b"bKGD"),
    }
)


def strip_png(data: bytes) -> bytes:
    """The PNG with only the kept chunks; it ends at IEND, which drops any trailer."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("PNG: no signature")
    kept = [_PNG_SIGNATURE]
    position = len(_PNG_SIGNATURE)
    while position + 12 <= len(data):  # length, type, data, CRC
        length, chunk_type = struct.unpack_from(">I4s", data, position)
        chunk_end = position + 12 + length
        if chunk_end > len(data):
            raise ValueError("PNG: truncated chunk")
        if chunk_type in _PNG_KEPT_CHUNKS:
            kept.append(data[position:chunk_end])
        position = chunk_end
        if chunk_type == b"IEND":
            return b"".join(kept)
    raise ValueError("PNG: no IEND chunk")


# Image data (VP8, VP8L, ALPH; ANIM and ANMF in a one-frame animation), the extended header and the
# ICC profile. EXIF, XMP and unknown chunks go.
_WEBP_KEPT_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"ALPH", b"VP8X", b"ICCP", b"ANIM", b"ANMF"})
_WEBP_FRAME_KEPT_CHUNKS = frozenset({b"VP8 ", b"VP8L", b"ALPH"})
_WEBP_FRAME_HEADER_SIZE = 16  # ANMF: position, size, duration and flags before its chunks
_VP8X_EXIF_AND_XMP_FLAGS = 0x08 | 0x04


def strip_webp(data: bytes) -> bytes:
    """The WebP with only the kept chunks and its header flags for EXIF and XMP cleared; it ends
    with the RIFF container, which drops any trailer."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("WebP: no RIFF WEBP header")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    body = b"WEBP" + _kept_webp_chunks(data, 12, min(len(data), 8 + riff_size), _WEBP_KEPT_CHUNKS)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _kept_webp_chunks(data: bytes, position: int, end: int, kept_types: frozenset[bytes]) -> bytes:
    kept: list[bytes] = []
    while position + 8 <= end:
        chunk_type, length = struct.unpack_from("<4sI", data, position)
        payload_start, payload_end = position + 8, position + 8 + length
        if payload_end > end:
            raise ValueError("WebP: truncated chunk")
        if chunk_type in kept_types:
            payload = data[payload_start:payload_end]
            if chunk_type == b"VP8X":
                if length < 10:
                    raise ValueError("WebP: short VP8X chunk")
                payload = bytes((payload[0] & ~_VP8X_EXIF_AND_XMP_FLAGS,)) + payload[1:]
            elif chunk_type == b"ANMF":  # a frame holds chunks of its own: filter those too
                if length < _WEBP_FRAME_HEADER_SIZE:
                    raise ValueError("WebP: short ANMF chunk")
                frame_chunks = _kept_webp_chunks(
                    data, payload_start + _WEBP_FRAME_HEADER_SIZE, payload_end, _WEBP_FRAME_KEPT_CHUNKS
                )
                payload = payload[:_WEBP_FRAME_HEADER_SIZE] + frame_chunks
            padding = b"\x00" * (len(payload) & 1)  # chunks are padded to an even size
            kept.append(chunk_type + struct.pack("<I", len(payload)) + payload + padding)
        position = payload_end + (length & 1)
    return b"".join(kept)
