"""Responses that serve a stored file without its bytes passing through Python where possible.

Under Granian the response hands the file's path to the server with the ASGI path-send extension
(``http.response.pathsend``, advertised in ``scope["extensions"]``): Granian opens, reads and
writes the file from its own threads. Litestar's ``File`` response does not use the extension;
it stats, opens, reads and closes the file with a thread hop each. Where the server does not
offer the extension (httpx's ``ASGITransport`` in tests), the file is read in a worker thread and
sent as one body. Measured for issue 10 (100 KB file, one worker): Litestar's ``File`` ~670
req/s, path send ~4,000, Granian's own RSGI file response ~6,000.

A file that has vanished since the caller looked it up (a concurrent replace or delete): without
the extension, a 404 problem (:class:`NotFoundError`). With it, nothing is checked in Python, to
keep a stat call off every request; Granian answers a bare 404 of its own instead (body
``Not found``, none of the response's headers) and logs "Cannot open file". Either way the client
sees 404, and its next request finds the current file.

HEAD, answered as GET by :class:`~bookstore.core.http.HeadAsGet`: the path-send message passes
through it unchanged, and Granian sends the headers (``Content-Length`` included) without the body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import anyio
from litestar.enums import ASGIExtension
from litestar.response.base import ASGIResponse

from bookstore.core.errors import NotFoundError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from litestar import Request
    from litestar.types import Message, Receive, Send

__all__ = ["PathSendResponse", "file_response"]

# A plain str, as the server reads the message's type (the enum member is a str subclass).
_PATH_SEND = ASGIExtension.PATH_SEND.value


class PathSendResponse(ASGIResponse):
    """A response whose body is the file at ``path``, sent by the server (ASGI path send).

    ``send_body`` is ``ASGIResponse``'s hook for the body (its docstring invites subclasses to
    customise it); the start of the response, HEAD handling and background tasks stay Litestar's.
    ``content_length`` must be the file's size: the server sends that many bytes of it.
    """

    __slots__ = ("path",)

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = str(path)

    async def send_body(self, send: Send, receive: Receive) -> None:
        # Litestar's message types do not include the extension's event.
        await send(cast("Message", {"type": _PATH_SEND, "path": self.path}))


async def file_response(
    request: Request[Any, Any, Any], path: Path, *, size: int, media_type: str, headers: Mapping[str, str]
) -> ASGIResponse:
    """A 200 with the file at ``path`` (``size`` bytes, as recorded when it was stored) as its
    body, ``media_type`` and ``headers``; conditional requests are the caller's business.

    Path send where the server offers it; else the bytes read in a worker thread, and a 404
    problem when the file is gone.
    """
    if _PATH_SEND in (request.scope.get("extensions") or {}):
        return PathSendResponse(path, content_length=size, media_type=media_type, headers=headers.items())
    try:
        body = await anyio.Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError("The file was removed while it was being requested; request it again.") from None
    return ASGIResponse(body=body, media_type=media_type, headers=headers.items())
