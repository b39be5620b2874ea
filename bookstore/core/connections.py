"""Request bodies from slow, stalled or vanished clients, handled in one ASGI wrapper of the app.

What the server stack leaves open, and what :class:`RequestBodyGuard` does about it:

- Granian (hyper) bounds the time to read request *headers* but not bodies: a client that stopped
  mid-body held its connection and a worker task forever. The whole body must now arrive within
  ``read_timeout`` seconds of the application starting to read it, or the request is answered
  408 and the connection closed.
- Litestar turns a client that disconnects mid-body into a 500 ("client disconnected
  prematurely") with a traceback. It is now a :class:`ClientDisconnectedError`: one INFO line,
  no error.
- An answer given before the body was read (401 from auth, 429 from the rate limiter, 413, 415)
  left hyper to close the connection once the request was over, and it did not always say
  ``Connection: close`` first (it cannot once the response head is out): keep-alive clients saw
  "Server disconnected" on their next request. Before such an answer goes out, the rest of a
  body of known, acceptable size is now read and dropped, so the connection stays usable; when
  that is not possible (chunked, too large, ``Expect: 100-continue``, stalled) the answer says
  ``Connection: close``.

Only ``POST``, ``PUT`` and ``PATCH`` pass through the guard; other methods reach the app untouched.
It wraps the whole application (``Litestar.asgi_handler``), outside the router and Litestar's
app-level exception handler: answers raised by a middleware (auth, rate limiter) and the router's
own 404 and 405 are sent from there, past any middleware's ``send``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from bookstore.core.errors import DomainError
from bookstore.core.http import method_label

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

__all__ = ["ClientDisconnectedError", "RequestBodyGuard", "RequestBodyTimeoutError"]

_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_CONNECTION_CLOSE = (b"connection", b"close")
# Characters of a request path a log line shows.
_LOGGED_PATH_LENGTH = 200
_logger = logging.getLogger("bookstore.connections")


class RequestBodyTimeoutError(DomainError):
    status_code = 408


class ClientDisconnectedError(DomainError):
    """The client went away before its request body arrived. No response can reach it; the 400
    is only what logs and metrics record."""

    status_code = 400


class _GuardedRequest:
    """The ``receive`` and ``send`` one request's application sees, and what they have seen.

    The body deadline is one ``loop.call_at`` timer per request that cancels the task if it is
    still waiting for the body, rather than ``asyncio.timeout`` around each ``receive``: under
    uvloop that cost ~13 µs per call, two calls per body; the timer costs ~1 µs.
    """

    __slots__ = ("_reading", "_receive", "_send", "_task", "_timer", "complete", "expired", "failed", "guard", "scope")

    def __init__(self, guard: RequestBodyGuard, scope: HTTPScope, receive: Receive, send: Send) -> None:
        self.guard = guard
        self.scope = scope
        self._receive = receive
        self._send = send
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reading = False
        self.complete = False  # the last body chunk has arrived
        self.expired = False  # the body deadline has passed
        self.failed = False  # the body stalled or the client left: no more of it will arrive

    async def receive(self) -> ReceiveMessage:
        if self.complete:
            # The app waiting for a disconnect (or the end of its response): not a body read.
            return await self._receive()
        try:
            message = await self._read_body()
        except TimeoutError:
            self.failed = True
            _logger.info("request body not received within %g s: %s", self.guard.read_timeout, self._target())
            raise RequestBodyTimeoutError(
                f"The request body did not arrive within {self.guard.read_timeout:g} seconds."
            ) from None
        if message["type"] == "http.disconnect":
            self.failed = True
            self.stop_deadline()
            _logger.info("client disconnected before its request body arrived: %s", self._target())
            raise ClientDisconnectedError("The client closed the connection before its request body arrived.")
        return message

    async def _read_body(self) -> ReceiveMessage:
        """The next body message; :class:`TimeoutError` once the body deadline has passed."""
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            self._timer = loop.call_at(loop.time() + self.guard.read_timeout, self._expire)
        if self.expired:
            raise TimeoutError
        self._reading = True
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            # Cancelled by `_expire` alone (not also from outside): the deadline, not a cancellation.
            if self.expired and self._task is not None and self._task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._reading = False
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.complete = True
            self._timer.cancel()
        return message

    def _expire(self) -> None:
        self.expired = True
        if self._reading and self._task is not None:
            self._task.cancel()

    def stop_deadline(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and not self.complete and not await self.settle_body():
            message["headers"] = [*message.get("headers", ()), _CONNECTION_CLOSE]
        await self._send(message)

    async def settle_body(self) -> bool:
        """Before an answer that leaves part of the body unread: read and drop the rest of a
        ``Content-Length`` body within the size limit, within what is left of the body deadline.
        Return whether the connection can stay open (False: it must close)."""
        if self.failed:
            return False
        length = 0
        for name, value in self.scope["headers"]:
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" or name == b"expect":
                # Of unknown size, or the client may send it only after a 100 Continue.
                return False
        if length == 0:
            return True
        if length > self.guard.drain_limit:
            return False
        try:
            while not self.complete:
                if (await self._read_body())["type"] != "http.request":
                    break
        except TimeoutError:
            _logger.info("unread request body not received within %g s: %s", self.guard.read_timeout, self._target())
        self.failed = not self.complete
        return self.complete

    def _target(self) -> str:
        """The request as a log line may show it: method and path come from the client, so the
        method is labelled and the path (the route's template once routed) quoted with its control
        characters escaped and cut short; no line break or terminal escape can reach the log."""
        path = self.scope.get("path_template") or self.scope["path"]
        return f"{method_label(self.scope['method'])} {path[:_LOGGED_PATH_LENGTH]!r}"


class RequestBodyGuard:
    """ASGI wrapper of the whole app: body deadline, clean disconnects and keep-alive after early
    answers (see the module docstring). A request without a body pays one set lookup."""

    def __init__(self, app: ASGIApp, *, read_timeout: float, drain_limit: int) -> None:
        self.app = app
        self.read_timeout = read_timeout
        self.drain_limit = drain_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        request = _GuardedRequest(self, cast("HTTPScope", scope), receive, send)
        try:
            await self.app(scope, request.receive, request.send)
        finally:
            request.stop_deadline()
