"""normalise_isbn: ISBN-10 and ISBN-13 in, one canonical ISBN-13 out, everything else rejected."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bookstore.books.isbn import InvalidIsbnError, isbn13_check_digit, normalise_isbn


def _isbn10_check_digit(first_nine: str) -> str:
    """The ISBN-10 check character, computed independently of the code under test."""
    remainder = sum((10 - index) * int(digit) for index, digit in enumerate(first_nine)) % 11
    check = (11 - remainder) % 11
    return "X" if check == 10 else str(check)


def _isbn13_is_valid(isbn: str) -> bool:
    """An independent ISBN-13 check: the weighted sum of all 13 digits is a multiple of 10."""
    return sum(int(digit) * (1 if index % 2 == 0 else 3) for index, digit in enumerate(isbn)) % 10 == 0


nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)
twelve_digit_stems = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["978", "979"]),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
)
valid_isbn13s = twelve_digit_stems.map(lambda stem: stem + isbn13_check_digit(stem))
valid_isbn10s = nine_digits.map(lambda stem: stem + _isbn10_check_digit(stem))


# --- known real ISBNs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("isbn10", "isbn13"),
    [
        ("0-306-40615-2", "9780306406157"),
        ("0-441-17271-7", "9780441172719"),
        ("0306406152", "9780306406157"),
    ],
)
def test_isbn10_is_converted_to_isbn13(isbn10: str, isbn13: str) -> None:
    assert normalise_isbn(isbn10) == isbn13


def test_isbn10_with_x_check_digit_is_converted_to_isbn13() -> None:
    assert normalise_isbn("0-8044-2957-X") == "9780804429573"


def test_isbn10_with_lowercase_x_check_digit_is_accepted() -> None:
    assert normalise_isbn("0-8044-2957-x") == "9780804429573"


@pytest.mark.parametrize(
    "text",
    ["978-0-306-40615-7", "978 0 306 40615 7", "9780306406157", " 978-0306406157 ", "978\t0306406157"],
)
def test_isbn13_with_hyphens_or_spaces_is_compacted(text: str) -> None:
    assert normalise_isbn(text) == "9780306406157"


def test_isbn13_with_979_prefix_is_accepted() -> None:
    stem = "979100000000"
    isbn = stem + isbn13_check_digit(stem)
    assert normalise_isbn(isbn) == isbn


# --- rejections -----------------------------------------------------------------------------------


def test_isbn13_with_wrong_check_digit_is_rejected() -> None:
    with pytest.raises(InvalidIsbnError, match="check digit"):
        normalise_isbn("978-0-306-40615-8")


def test_isbn10_with_wrong_check_digit_is_rejected() -> None:
    with pytest.raises(InvalidIsbnError, match="check digit"):
        normalise_isbn("0-306-40615-3")


def test_isbn10_with_x_in_the_wrong_place_is_rejected() -> None:
    with pytest.raises(InvalidIsbnError):
        normalise_isbn("0-306-4X615-2")


@pytest.mark.parametrize("prefix", ["977", "980", "123"])
def test_thirteen_digits_without_978_or_979_prefix_are_rejected(prefix: str) -> None:
    stem = prefix + "030640615"
    # The check digit is right for these digits: only the prefix makes it invalid.
    with pytest.raises(InvalidIsbnError):
        normalise_isbn(stem + isbn13_check_digit(stem))


def test_arabic_indic_digits_are_rejected() -> None:
    # "9780306406157" written with ARABIC-INDIC DIGITs (U+0660..U+0669): str.isdigit() is true.
    arabic = "".join(chr(0x0660 + int(digit)) for digit in "9780306406157")
    assert arabic.isdigit()
    with pytest.raises(InvalidIsbnError):
        normalise_isbn(arabic)


def test_fullwidth_digits_in_isbn10_are_rejected() -> None:
    fullwidth = "".join(chr(0xFF10 + int(digit)) for digit in "0306406152")
    with pytest.raises(InvalidIsbnError):
        normalise_isbn(fullwidth)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "---",
        "not an isbn",
        "978030640615",  # 12 digits
        "97803064061570",  # 14 digits
        "030640615",  # 9 digits
        "03064061522",  # 11 digits
        "978_0306406157",
        "978.0.306.40615.7",
        "ISBN 978-0-306-40615-7",
        "9780306406157\x00",
    ],
)
def test_garbage_is_rejected(text: str) -> None:
    with pytest.raises(InvalidIsbnError):
        normalise_isbn(text)


def test_invalid_isbn_error_is_a_value_error() -> None:
    assert issubclass(InvalidIsbnError, ValueError)


# --- properties -----------------------------------------------------------------------------------


@given(nine_digits)
def test_any_valid_isbn10_normalises_to_a_valid_978_isbn13(stem: str) -> None:
    isbn10 = stem + _isbn10_check_digit(stem)

    result = normalise_isbn(isbn10)

    assert len(result) == 13
    assert result.isascii()
    assert result.isdigit()
    assert result.startswith("978")
    assert result[3:12] == stem
    assert _isbn13_is_valid(result)


@given(valid_isbn13s)
def test_any_valid_isbn13_is_returned_unchanged(isbn: str) -> None:
    assert normalise_isbn(isbn) == isbn


@given(valid_isbn13s, st.integers(min_value=0, max_value=12), st.integers(min_value=1, max_value=9))
def test_any_single_digit_change_of_a_valid_isbn13_is_rejected(isbn: str, position: int, delta: int) -> None:
    changed_digit = str((int(isbn[position]) + delta) % 10)
    changed = isbn[:position] + changed_digit + isbn[position + 1 :]
    assert changed != isbn

    with pytest.raises(InvalidIsbnError):
        normalise_isbn(changed)


@given(st.one_of(valid_isbn10s, valid_isbn13s))
def test_normalisation_is_idempotent(isbn: str) -> None:
    once = normalise_isbn(isbn)
    assert normalise_isbn(once) == once


@given(valid_isbn13s, st.lists(st.sampled_from(["-", " "]), min_size=13, max_size=13))
def test_separators_between_digits_do_not_change_the_result(isbn: str, separators: list[str]) -> None:
    spaced = "".join(digit + separator for digit, separator in zip(isbn, separators, strict=True))
    assert normalise_isbn(spaced) == isbn


@given(st.text(max_size=20))
def test_any_text_is_either_rejected_or_normalised_to_a_valid_isbn13(text: str) -> None:
    try:
        result = normalise_isbn(text)
    except InvalidIsbnError:
        return
    assert len(result) == 13
    assert result.isascii()
    assert result.isdigit()
    assert result[:3] in {"978", "979"}
    assert _isbn13_is_valid(result)
