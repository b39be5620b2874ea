"""Constrained string types and helpers shared by the request schemas of every domain.

PostgreSQL rejects NUL characters in text, and control characters have no place in a title or
an email, so every free-text field is checked here before any code (or the database) sees it.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

__all__ = ["SingleLineText", "field_error", "split_field_error"]

# At least one visible character and no C0/C1 control characters (this includes NUL, tab and
# newline). Length bounds are added per field.
_SINGLE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"

SingleLineText = Annotated[str, Meta(pattern=_SINGLE_LINE_PATTERN)]


def field_error(field: str, message: str) -> ValueError:
    """A ValueError that msgspec and Litestar report against ``field``, like their own errors."""
    return ValueError(f"{message} - at `$.{field}`")


def split_field_error(error: Exception) -> tuple[str, str | None]:
    """The message and the field path (``a.b``, None at the top) of msgspec's error text
    "message - at `$.a.b`", which :func:`field_error` also produces."""
    message, _, location = str(error).partition(" - at `$.")
    return message, location.rstrip("`") or None
