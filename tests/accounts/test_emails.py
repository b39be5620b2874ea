"""Email normal forms and validation: one address, one account."""

from __future__ import annotations

import pytest

from bookstore.accounts.emails import normalise_email, validate_email


@pytest.mark.parametrize(
    "variant",
    ["Alice@Example.com", "  alice@example.com ", "ALICE@EXAMPLE.COM", "\uff41\uff4c\uff49\uff43\uff45@example.com"],
)
def test_variants_of_an_address_share_one_normal_form(variant: str) -> None:
    assert normalise_email(variant) == "alice@example.com"


@pytest.mark.parametrize(
    "look_alike",
    [
        "alice@example.com\u200b",  # zero-width space
        "\u202eliame@example.com",  # right-to-left override
        "al\ufeffice@example.com",  # byte order mark
        "alice\u2060@example.com",  # word joiner
    ],
)
def test_addresses_with_invisible_formatting_characters_are_refused(look_alike: str) -> None:
    with pytest.raises(ValueError, match="invisible"):
        validate_email(look_alike)


def test_a_plain_address_is_accepted_in_its_normal_form() -> None:
    assert validate_email(" Reader@Example.COM") == "reader@example.com"
