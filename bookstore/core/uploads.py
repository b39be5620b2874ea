"""The bytes of one uploaded file, read from a request body with a size limit and never spooled.

:func:`read_upload` accepts ``multipart/form-data`` with one part of the expected name, or the
file as the raw body (``image/*`` or ``application/octet-stream``). It holds at most the limit
in memory (twice that for the moment of the final copy into ``bytes``), no temporary file: the
caller decodes the file from those bytes anyway (Pillow needs them in one buffer).

Why not Litestar's own parsing (``MultipartBody[UploadFile]`` and ``request_max_body_size``):

- its size limit is fixed when the route is declared, where the settings are not known yet;
- a handler taking a multipart ``data`` parameter answers a raw ``image/*`` body with 400;
- ``MultipartBody[UploadFile]`` takes the first file part whatever its name, and file parts go
  to a temporary file above 1 MiB, which the handler must close.

How it fits with the rest of the request path (litestar 2.25, multipart 2.0, Granian 2.8):

- The route declares ``request_max_body_size=None``. ``Request.stream()`` then compares with
  ``math.inf``: no 413 from Litestar, and the app-wide ``max_request_body_bytes`` (64 KiB by
  default) stays in force on every other route. The limit here is the only one on this route.
- ``RequestBodyGuard`` (:mod:`bookstore.core.connections`) wraps the ``receive`` the stream reads:
  the whole body must arrive within ``body_read_timeout_seconds`` (10 s by default) of the first
  read, so a 5 MiB upload needs at least ~0.5 MiB/s, or the answer is 408 and the connection is
  closed; a client leaving mid-body is its ``ClientDisconnectedError``, not Litestar's 500.
- An answer given before the whole body was read (413, 415, 400 here) goes out through the
  guard: a rest of known size up to its drain limit (the same 64 KiB) is read and dropped so the
  connection stays usable; a larger, chunked or ``Expect: 100-continue`` body is not read at
  all, and the answer says ``Connection: close``. With ``Expect: 100-continue`` (curl's default
  for large bodies) a refused upload is never even sent.
- Granian hands the body over in chunks of up to ~400 KiB (64 KiB when chunked); the multipart
  parser keeps at most one chunk besides the part's bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# multipart ships no type information (no py.typed); its few names used here are checked by tests.
from multipart import (  # type: ignore[import-untyped]
    MultipartSegment,
    ParserError,
    ParserLimitReached,
    PushMultipartParser,
)

from bookstore.core.errors import PayloadTooLargeError, UnsupportedMediaTypeError, invalid_input

if TYPE_CHECKING:
    from litestar import Request

__all__ = ["MAX_MULTIPART_PARTS", "MULTIPART_OVERHEAD_BYTES", "read_upload"]

# What a multipart body may add around the file: boundaries, part headers and a few small form
# fields. A Content-Length beyond the file limit plus this is refused before reading.
MULTIPART_OVERHEAD_BYTES = 16 * 1024
# A form with the file and a few other fields; each part is also at most the file limit.
MAX_MULTIPART_PARTS = 8
_MULTIPART = "multipart/form-data"
_OCTET_STREAM = "application/octet-stream"


async def read_upload(request: Request[Any, Any, Any], *, max_bytes: int, field: str = "file") -> bytes:
    """The uploaded file: the part named ``field`` of a ``multipart/form-data`` body (a file part
    or a plain one; other parts are read past and dropped), or the whole body when it is declared
    ``image/*`` or ``application/octet-stream``.

    Raises :class:`UnsupportedMediaTypeError` (415) for any other or a missing ``Content-Type``;
    :class:`PayloadTooLargeError` (413) when ``Content-Length`` announces more than the file limit
    (plus :data:`MULTIPART_OVERHEAD_BYTES` for multipart) before a byte is read, else as soon as
    the file passes ``max_bytes`` bytes (or the multipart body its limits: more than
    :data:`MAX_MULTIPART_PARTS` parts, a part over ``max_bytes``); a 400 for an empty file, a
    missing or repeated ``field`` part, a missing boundary, or malformed or unterminated multipart.
    """
    media_type, options = request.content_type
    if media_type == _MULTIPART:
        upload = await _read_multipart_field(request, options.get("boundary"), max_bytes=max_bytes, field=field)
        if not upload:
            raise invalid_input("is empty; send the file's bytes in it", key=field, source="body")
        return upload
    if (media_type.startswith("image/") and media_type != "image/") or media_type == _OCTET_STREAM:
        upload = await _read_raw_body(request, max_bytes=max_bytes)
        if not upload:
            raise invalid_input("is empty; send the file's bytes", key=None, source="body")
        return upload
    raise UnsupportedMediaTypeError(
        f"Send the file as {_MULTIPART} with a `{field}` part, or as the request body with an image/* "
        f"or {_OCTET_STREAM} Content-Type."
    )


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The file must be at most {max_bytes} bytes.")


def _refuse_announced_length(request: Request[Any, Any, Any], limit: int, max_bytes: int) -> None:
    """413 before reading anything when ``Content-Length`` is over ``limit``."""
    length = request.content_length  # a malformed header is Litestar's 400
    if length is not None and length > limit:
        raise _too_large(max_bytes)


async def _read_raw_body(request: Request[Any, Any, Any], *, max_bytes: int) -> bytes:
    _refuse_announced_length(request, max_bytes, max_bytes)
    upload = bytearray()
    async for chunk in request.stream():
        if len(upload) + len(chunk) > max_bytes:
            raise _too_large(max_bytes)
        upload += chunk
    return bytes(upload)


async def _read_multipart_field(
    request: Request[Any, Any, Any], boundary: str | None, *, max_bytes: int, field: str
) -> bytes:
    if not boundary:
        raise invalid_input(f"must name the boundary of {_MULTIPART}", key="Content-Type", source="header")
    body_limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    _refuse_announced_length(request, body_limit, max_bytes)
    upload = bytearray()
    found = in_field = False
    received = 0
    try:
        # strict: refuses what no real client sends (continued part headers, a part without a
        # name, another chunk after the closing boundary) instead of reading on; a preamble and an
        # epilogue, which RFC 2046 allows, are skipped.
        with PushMultipartParser(
            boundary, max_segment_size=max_bytes, max_segment_count=MAX_MULTIPART_PARTS, strict=True
        ) as parser:
            # The stream ends with b"", which is also the parser's end of input: an unterminated
            # body raises there (leaving the `with` checks again, for a stream ending otherwise).
            async for chunk in request.stream():
                received += len(chunk)
                if received > body_limit:  # each part is bounded, but not 8 of them together
                    raise _too_large(max_bytes)
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        in_field = event.name == field
                        if in_field and found:
                            raise invalid_input(f"has more than one `{field}` part", key=field, source="body")
                        found = found or in_field
                    elif event and in_field:  # a piece of the part's body (None ends a part)
                        upload += event
    except ParserLimitReached as error:
        # multipart's own classification of its limits (and Litestar's intent, per its FIXME): 413.
        raise PayloadTooLargeError(
            f"The {_MULTIPART} body is over a limit ({error}): at most {MAX_MULTIPART_PARTS} parts, "
            f"the file at most {max_bytes} bytes."
        ) from None
    except ParserError as error:
        raise invalid_input(f"is not valid {_MULTIPART} ({error})", key=None, source="body") from None
    if not found:
        raise invalid_input(f"has no `{field}` part", key=field, source="body")
    return bytes(upload)
