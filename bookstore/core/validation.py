"""Input rules shared by the request schemas and parameters of every domain.

Numbers are accepted only in their canonical ASCII spelling: Python's ``int()``/``Decimal()`` and
msgspec's lax conversions also take ``+1``, ``01``, ``1_000``, ``" 12 "``, ``1e3`` and non-ASCII
digits such as ``١٢``, so one id or price could be written many ways that all reach the same row.

Free text is checked the way Unicode defines it: PostgreSQL rejects NUL in text, control
characters (Cc) and line or paragraph separators (Zl, Zp) break a "single line", and format
characters (Cf, e.g. U+200B ZERO WIDTH SPACE) are invisible, so they do not make a text non-blank.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from msgspec import Meta

__all__ = [
    "SINGLE_LINE_PATTERN",
    "SingleLineText",
    "exact_pattern",
    "field_error",
    "has_visible_character",
    "is_canonical_int",
    "parse_canonical_int",
    "split_field_error",
]


def exact_pattern(body: str) -> str:
    """A regex matching exactly ``body``, for msgspec and for the OpenAPI document alike.

    msgspec applies patterns with Python's ``re.search``, where ``$`` also matches before a final
    newline (``"title\\n"`` would pass); the lookahead rules that out, and changes nothing for
    ECMA-262 regexes (JSON Schema), whose ``$`` is only the end of the text.
    """
    return f"^(?:{body})$(?!\\n)"


# No control characters (C0, DEL, C1: NUL, tab, newline ...) and no U+2028/U+2029 separators.
SINGLE_LINE_PATTERN = exact_pattern(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]*")

SingleLineText = Annotated[str, Meta(pattern=SINGLE_LINE_PATTERN)]

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# Default_Ignorable_Code_Point characters outside Cf (Unicode DerivedCoreProperties.txt): the
# combining grapheme joiner, Hangul fillers, variation selectors and reserved ignorables.
_IGNORABLE_OUTSIDE_CF = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u2065\u3164\ufe00-\ufe0f\uffa0\ufff0-\ufff8"
    "\U000e0000-\U000e0fff]"
)


def has_visible_character(text: str) -> bool:
    """True if ``text`` has a character that renders as something: not whitespace, a control
    or format character, or another default-ignorable code point."""
    return any(
        unicodedata.category(char) not in _INVISIBLE_CATEGORIES and not _IGNORABLE_OUTSIDE_CF.match(char)
        for char in text
    )


def is_canonical_int(text: str) -> bool:
    """True if ``text`` is a whole number >= 0 in its one canonical spelling: ASCII digits, no
    sign, spaces, separators or leading zeros."""
    return text.isascii() and text.isdigit() and (text[0] != "0" or text == "0")


def parse_canonical_int(text: str, maximum: int) -> int | None:
    """The value of ``text`` if it is canonical (:func:`is_canonical_int`) and at most ``maximum``."""
    if not is_canonical_int(text) or len(text) > len(str(maximum)):
        return None
    value = int(text)
    return value if value <= maximum else None


def field_error(field: str, message: str) -> ValueError:
    """A ValueError that msgspec and Litestar report against ``field``, like their own errors."""
    return ValueError(f"{message} - at `$.{field}`")


def split_field_error(error: Exception) -> tuple[str, str | None]:
    """The message and the field path (``a.b``, None at the top) of msgspec's error text
    "message - at `$.a.b`", which :func:`field_error` also produces."""
    message, _, location = str(error).partition(" - at `$.")
    return message, location.rstrip("`") or None
