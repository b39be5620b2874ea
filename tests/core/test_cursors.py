"""Page cursors (``bookstore.core.cursors.CursorSigner``) on their own: what a cursor carries, and
every way a cursor that this signer did not issue, or issued too long ago, is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

import pytest

from bookstore.core.cursors import CursorSigner, InvalidCursorError
from tests.conftest import TEST_SECRET

OTHER_SECRET = "another-secret-" + "y" * 40
TTL_SECONDS = 600
ISSUED_AT = 1_800_000_000.0
VALUES: list[Any] = ["9c1f0e", "a", "The Left Hand of Darkness", 42]
LISTING = "books"
URL_SAFE_CURSOR = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class Clock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(ISSUED_AT)


@pytest.fixture
def signer(clock: Clock) -> CursorSigner:
    return CursorSigner(TEST_SECRET, TTL_SECONDS, clock=clock)


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def flip_bit(text: str, byte_index: int) -> str:
    """``text`` (base64url) with the lowest bit of one of its decoded bytes flipped."""
    data = bytearray(b64decode(text))
    data[byte_index] ^= 1
    return b64encode(bytes(data))


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        VALUES,
        ["9c1f0e", "b", "2024-02-29T23:59:59.999999Z", 9_007_199_254_740_993],
        ["9c1f0e", "a", 0.06079271, 1],
        ["9c1f0e", "b", 'Łódź — 東京 \u2028 "quoted" \\ / .', 7],
        [None, True, [], {"nested": [1, 2]}],
        [],
    ],
    ids=["title-key", "timestamp-key", "rank-key", "unicode-key", "any-json", "nothing"],
)
def test_signed_values_open_unchanged(signer: CursorSigner, values: list[Any]) -> None:
    assert signer.open(signer.sign(values, listing=LISTING), listing=LISTING) == values


@pytest.mark.parametrize("length", range(12))
def test_cursor_is_url_safe_base64_without_padding_for_every_payload_length(signer: CursorSigner, length: int) -> None:
    # Payload lengths of every remainder modulo 3, so every unpadded form of base64 occurs.
    cursor = signer.sign(["x" * length], listing=LISTING)
    assert URL_SAFE_CURSOR.fullmatch(cursor), cursor
    assert signer.open(cursor, listing=LISTING) == ["x" * length]


def test_a_signer_with_the_same_secret_opens_another_signers_cursor(signer: CursorSigner, clock: Clock) -> None:
    # Every worker process builds its own signer from the shared secret.
    other_worker = CursorSigner(TEST_SECRET, TTL_SECONDS, clock=clock)
    assert other_worker.open(signer.sign(VALUES, listing=LISTING), listing=LISTING) == VALUES


# --- expiry -------------------------------------------------------------------------------------


def test_cursor_opens_until_just_before_its_ttl_has_passed(signer: CursorSigner, clock: Clock) -> None:
    cursor = signer.sign(VALUES, listing=LISTING)
    clock.now = ISSUED_AT + TTL_SECONDS - 0.001
    assert signer.open(cursor, listing=LISTING) == VALUES


@pytest.mark.parametrize("elapsed", [TTL_SECONDS, TTL_SECONDS + 1, 365 * 24 * 3600])
def test_cursor_is_refused_once_its_ttl_has_passed(signer: CursorSigner, clock: Clock, elapsed: int) -> None:
    cursor = signer.sign(VALUES, listing=LISTING)
    clock.now = ISSUED_AT + elapsed
    with pytest.raises(InvalidCursorError, match="expired"):
        signer.open(cursor, listing=LISTING)


def test_cursor_from_a_clock_in_the_past_is_refused_by_a_signer_of_today() -> None:
    issued_long_ago = CursorSigner(TEST_SECRET, TTL_SECONDS, clock=lambda: ISSUED_AT - TTL_SECONDS)
    today = CursorSigner(TEST_SECRET, TTL_SECONDS, clock=lambda: ISSUED_AT)
    with pytest.raises(InvalidCursorError, match="expired"):
        today.open(issued_long_ago.sign(VALUES, listing=LISTING), listing=LISTING)


# --- forgeries ----------------------------------------------------------------------------------


def _payload_and_tag(cursor: str) -> tuple[str, str]:
    payload, tag = cursor.split(".")
    return payload, tag


def _with_flipped_payload_bit(cursor: str) -> str:
    payload, tag = _payload_and_tag(cursor)
    # The last digit of the book id (just before the closing bracket): a cursor for another book.
    return f"{flip_bit(payload, len(b64decode(payload)) - 2)}.{tag}"


def _with_flipped_tag_bit(cursor: str) -> str:
    payload, tag = _payload_and_tag(cursor)
    return f"{payload}.{flip_bit(tag, 0)}"


def _with_a_later_expiry(cursor: str) -> str:
    payload, tag = _payload_and_tag(cursor)
    expires_at = int(ISSUED_AT) + TTL_SECONDS
    extended = b64decode(payload).replace(str(expires_at).encode(), str(expires_at + 10**6).encode())
    return f"{b64encode(extended)}.{tag}"


def _tagged_with_the_raw_secret(cursor: str) -> str:
    # Tagged with the service secret itself rather than the cursor key derived from it, as anything
    # else the service signs with that secret would be.
    payload, _ = _payload_and_tag(cursor)
    tag = hmac.new(TEST_SECRET.encode(), b64decode(payload), hashlib.sha256).digest()[:16]
    return f"{payload}.{b64encode(tag)}"


def _signed_with_another_secret(_: str) -> str:
    return CursorSigner(OTHER_SECRET, TTL_SECONDS, clock=lambda: ISSUED_AT).sign(VALUES, listing=LISTING)


def _with_the_tag_of_another_cursor(cursor: str) -> str:
    payload, _ = _payload_and_tag(cursor)
    _, other_tag = _payload_and_tag(
        CursorSigner(TEST_SECRET, TTL_SECONDS, clock=lambda: ISSUED_AT).sign(["other"], listing=LISTING)
    )
    return f"{payload}.{other_tag}"


def _with_unused_tag_bits_set(cursor: str) -> str:
    # A 16-byte tag is 22 base64 characters carrying 132 bits: the last character's low 4 are unused.
    payload, tag = _payload_and_tag(cursor)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return f"{payload}.{tag[:-1]}{alphabet[alphabet.index(tag[-1]) ^ 1]}"


FORGERIES: dict[str, Callable[[str], str]] = {
    "payload bit flipped": _with_flipped_payload_bit,
    "tag bit flipped": _with_flipped_tag_bit,
    "expiry moved later": _with_a_later_expiry,
    "tagged with the raw secret": _tagged_with_the_raw_secret,
    "signed with another secret": _signed_with_another_secret,
    "tag of another cursor": _with_the_tag_of_another_cursor,
    "tag truncated": lambda cursor: cursor[:-4],
    "tag missing": lambda cursor: _payload_and_tag(cursor)[0],
    "tag empty": lambda cursor: _payload_and_tag(cursor)[0] + ".",
    "payload empty": lambda cursor: "." + _payload_and_tag(cursor)[1],
    "both parts empty": lambda _: ".",
    "empty": lambda _: "",
    "a third part": lambda cursor: cursor + ".AAAA",
    "garbage": lambda _: "garbage",
    "impossible base64 length": lambda cursor: "A" + cursor,
    "characters outside base64": lambda cursor: cursor.replace(".", "!."),
    "whitespace inside": lambda cursor: cursor[:5] + " " + cursor[5:],
    "non-ASCII": lambda cursor: "é" + cursor,
    "NUL": lambda cursor: "\x00" + cursor,
    # Other spellings of the same bytes: refused too, so that a cursor has exactly one text.
    "padding added": lambda cursor: cursor.replace(".", "==.") + "==",
    "standard alphabet": lambda cursor: (
        cursor.replace("-", "+").replace("_", "/") + ("" if "-" in cursor or "_" in cursor else "+")
    ),
    "unused low bits of the tag set": _with_unused_tag_bits_set,
}


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_or_malformed_cursor_is_refused(signer: CursorSigner, forge: Callable[[str], str]) -> None:
    cursor = signer.sign(VALUES, listing=LISTING)
    assert signer.open(cursor, listing=LISTING) == VALUES  # the original opens, so only the forgery is refused
    with pytest.raises(InvalidCursorError, match="not a cursor issued by this service"):
        signer.open(forge(cursor), listing=LISTING)


def test_a_cursor_of_another_listing_is_refused(signer: CursorSigner) -> None:
    cursor = signer.sign(VALUES, listing="orders")
    with pytest.raises(InvalidCursorError, match="for this listing"):
        signer.open(cursor, listing=LISTING)
