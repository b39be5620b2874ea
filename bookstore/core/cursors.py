"""Opaque, tamper-evident page cursors for keyset pagination, shared by every listing.

A cursor is ``<payload>.<tag>``, both base64url without padding: the payload is a JSON array
(whatever positional values a listing needs, its expiry first), the tag the first 16 bytes of the
HMAC-SHA256 of the listing's name and the payload, under a key derived from the service's secret;
so a cursor of one listing (orders) never opens in another (books). Clients cannot read meaning into it
or forge one, so a listing can trust the key values it holds and change their layout later; a
cursor that does not verify, has expired or does not parse is refused with a 400 by the caller.
Written here rather than with a JWT library because a cursor needs none of JWT's header,
algorithm negotiation or claim names, and travels in a URL where every byte counts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["CURSOR_MAX_LENGTH", "CursorSigner", "InvalidCursorError"]

# Above any cursor the service issues: the longest sort key, a title of 300 four-byte characters,
# makes one of ~1,720 characters (most are under 150).
CURSOR_MAX_LENGTH = 2048
_TAG_BYTES = 16
_KEY_CONTEXT = b"bookstore page cursor v1"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[Any])


class InvalidCursorError(ValueError):
    """The cursor was not issued by this service (with this secret), has expired, or is malformed."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # validate=True: no characters outside the alphabet are silently skipped.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class CursorSigner:
    """Signs and opens cursors that expire ``ttl_seconds`` after they are issued."""

    def __init__(self, secret: str, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        # A key of its own, so that nothing signed for another purpose (tokens) verifies as a cursor.
        self._key = hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()
        self._ttl_seconds = ttl_seconds
        self._clock = clock

    def _tag(self, listing: str, payload: bytes) -> bytes:
        # The NUL ends the name, so no other (name, payload) pair gives the same input.
        return hmac.new(self._key, f"{listing}\0".encode() + payload, hashlib.sha256).digest()[:_TAG_BYTES]

    def sign(self, values: list[Any], *, listing: str) -> str:
        """A cursor of ``listing`` carrying ``values`` (JSON-encodable) until it expires."""
        payload = _encoder.encode([int(self._clock()) + self._ttl_seconds, *values])
        return f"{_b64encode(payload)}.{_b64encode(self._tag(listing, payload))}"

    def open(self, cursor: str, *, listing: str) -> list[Any]:
        """The values of a cursor this signer issued for ``listing`` and that has not expired."""
        encoded_payload, _, encoded_tag = cursor.partition(".")
        try:
            payload, tag = _b64decode(encoded_payload), _b64decode(encoded_tag)
        except (binascii.Error, ValueError):
            raise InvalidCursorError("is not a cursor issued by this service") from None
        # The text must also be the one spelling sign() writes: base64 decoding also takes padding,
        # "+" and "/", and ignores the unused low bits of the last character.
        if (
            not hmac.compare_digest(tag, self._tag(listing, payload))
            or cursor != f"{_b64encode(payload)}.{_b64encode(tag)}"
        ):
            raise InvalidCursorError("is not a cursor issued by this service for this listing")
        # Signed by us, so it parses; a failure here would be a bug, not bad input.
        expires_at, *values = _decoder.decode(payload)
        if expires_at <= self._clock():
            raise InvalidCursorError("has expired; start again from the first page")
        return values
