"""Email addresses as login names: one normal form, so ``Alice@X.com`` and ``alice@x.com`` are
the same account."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_EMAIL_LENGTH", "normalise_email", "validate_email"]

# RFC 5321 caps a forward path at 256 octets, so an address is at most 254 characters.
MAX_EMAIL_LENGTH = 254

# Deliberately simple: one @, a non-empty local part, a dotted domain, no whitespace or control
# characters. Deliverability can only be proven by sending mail, which this service does not do.
_EMAIL_PATTERN = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@(?:[^@\s\x00-\x1f\x7f.]+\.)+[^@\s\x00-\x1f\x7f.]{2,}$")


def normalise_email(email: str) -> str:
    """Trim, NFKC-normalise and case-fold an address (the form stored and compared)."""
    return unicodedata.normalize("NFKC", email).strip().casefold()


def validate_email(email: str) -> str:
    """Return the normalised address, or raise ValueError saying what is wrong with it."""
    normalised = normalise_email(email)
    if len(normalised) > MAX_EMAIL_LENGTH:
        raise ValueError(f"must be at most {MAX_EMAIL_LENGTH} characters")
    if not _EMAIL_PATTERN.match(normalised):
        raise ValueError("must be an email address such as reader@example.com")
    # Format characters (zero-width spaces, bidi overrides, BOM) survive NFKC and case-folding
    # and would let look-alike accounts of one address be registered.
    if any(unicodedata.category(char) == "Cf" for char in normalised):
        raise ValueError("must not contain invisible formatting characters")
    return normalised
