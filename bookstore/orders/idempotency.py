"""``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header): what a key may be, which
requests count as the same, and the error for a key reused with another request.

A key is claimed in PostgreSQL in the same transaction as the order it protects (see
``queries.place_order``), so a retry, even one arriving while the first request is still running,
gets the first response back instead of a second order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus

import msgspec

from bookstore.core.errors import DomainError
from bookstore.core.validation import exact_pattern
from bookstore.orders.schemas import OrderCreate
from bookstore.orders.tables import IDEMPOTENCY_KEY_MAX_LENGTH

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "IDEMPOTENCY_KEY_TTL",
    "IdempotencyKeyReusedError",
    "IdempotentRequest",
    "StoredResponse",
    "idempotency_key_of",
    "request_fingerprint",
]

# How long a key is remembered; afterwards it counts as never used.
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)

# Visible ASCII, bare or as an RFC 8941 sf-string ("..."), the form the draft writes. The quote
# is left out of bare keys, and the quote and backslash (sf-string escapes) out of quoted ones, so
# that every accepted header means exactly one key.
_VISIBLE_BUT_QUOTE = r"\x21\x23-\x7E"
IDEMPOTENCY_KEY_PATTERN = exact_pattern(
    f"[{_VISIBLE_BUT_QUOTE}]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}"
    f'|"[\\x21\\x23-\\x5B\\x5D-\\x7E]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}"'
)
_encoder = msgspec.json.Encoder()


class IdempotencyKeyReusedError(DomainError):
    """The key was used before, by this user, for a request with another body."""

    status_code = HTTPStatus.UNPROCESSABLE_ENTITY


@dataclass(frozen=True)
class IdempotentRequest:
    """A request sent with an ``Idempotency-Key``: the key and the fingerprint of its body."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class StoredResponse:
    """The response a key's first request got, replayed byte for byte to its retries."""

    status_code: int
    body: bytes
    location: str


def idempotency_key_of(header_value: str) -> str:
    """The key a header value (already matched against :data:`IDEMPOTENCY_KEY_PATTERN`) names:
    ``"abc"`` and ``abc`` are the same key."""
    if len(header_value) >= 2 and header_value[0] == header_value[-1] == '"':
        return header_value[1:-1]
    return header_value


def request_fingerprint(order: OrderCreate) -> str:
    """SHA-256 (hex) of what the request asks for, independent of how its JSON was written
    (whitespace, member order, the order of the lines)."""
    lines = sorted((line.book_id, line.quantity) for line in order.items)
    return hashlib.sha256(_encoder.encode(lines)).hexdigest()
