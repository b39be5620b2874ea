"""ISBN validation and normalisation: accept ISBN-10 or ISBN-13, store ISBN-13."""

from __future__ import annotations

import re

__all__ = ["InvalidIsbnError", "isbn13_check_digit", "normalise_isbn"]

_SEPARATORS = re.compile(r"[\s-]")
_ISBN10 = re.compile(r"^[0-9]{9}[0-9X]$")
_ISBN13 = re.compile(r"^97[89][0-9]{10}$")


class InvalidIsbnError(ValueError):
    """The text is not a valid ISBN-10 or ISBN-13."""


def isbn13_check_digit(first_twelve: str) -> str:
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(first_twelve))
    return str((10 - total % 10) % 10)


def _isbn10_is_valid(isbn: str) -> bool:
    total = sum((10 - index) * (10 if char == "X" else int(char)) for index, char in enumerate(isbn))
    return total % 11 == 0


def normalise_isbn(text: str) -> str:
    """Return the ISBN-13 of ``text`` (hyphens and spaces allowed), or raise InvalidIsbnError."""
    compact = _SEPARATORS.sub("", text).upper()
    if _ISBN13.match(compact):
        if isbn13_check_digit(compact[:12]) != compact[12]:
            raise InvalidIsbnError("has a wrong check digit")
        return compact
    if _ISBN10.match(compact):
        if not _isbn10_is_valid(compact):
            raise InvalidIsbnError("has a wrong check digit")
        stem = "978" + compact[:9]
        return stem + isbn13_check_digit(stem)
    raise InvalidIsbnError("must be an ISBN-10 or ISBN-13 (digits, optionally with hyphens or spaces)")
