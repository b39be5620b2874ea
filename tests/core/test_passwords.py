"""Argon2id password hashing: format, verification, rehash detection and the async wrappers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bookstore.core.passwords import (
    configure_password_hasher,
    hash_password,
    hash_password_sync,
    needs_rehash,
    verify_password,
    verify_password_sync,
)

PASSWORD = "correct horse battery staple"
# The cheap parameters the test session runs with (tests/conftest.py make_settings).
SESSION_PARAMETERS = {"time_cost": 1, "memory_cost_kib": 8 * 1024, "parallelism": 1}


@pytest.fixture(autouse=True)
def session_hasher() -> Iterator[None]:
    """Run every test with the session's cheap parameters and put them back afterwards."""
    configure_password_hasher(**SESSION_PARAMETERS)
    yield
    configure_password_hasher(**SESSION_PARAMETERS)


def test_hash_is_argon2id() -> None:
    assert hash_password_sync(PASSWORD).startswith("$argon2id$")


def test_hash_records_the_configured_parameters() -> None:
    assert "$m=8192,t=1,p=1$" in hash_password_sync(PASSWORD)


def test_hash_does_not_contain_the_password() -> None:
    assert PASSWORD not in hash_password_sync(PASSWORD)


def test_hashing_the_same_password_twice_uses_different_salts() -> None:
    assert hash_password_sync(PASSWORD) != hash_password_sync(PASSWORD)


def test_verify_accepts_the_right_password() -> None:
    assert verify_password_sync(hash_password_sync(PASSWORD), PASSWORD) is True


def test_verify_rejects_a_wrong_password() -> None:
    assert verify_password_sync(hash_password_sync(PASSWORD), PASSWORD + "!") is False


def test_verify_is_case_sensitive() -> None:
    assert verify_password_sync(hash_password_sync(PASSWORD), PASSWORD.upper()) is False


def test_verify_without_a_stored_hash_is_false() -> None:
    assert verify_password_sync(None, PASSWORD) is False


def test_verify_without_a_stored_hash_is_false_even_for_the_dummy_password() -> None:
    # Unknown accounts are checked against an internal dummy hash; its password must not log in.
    assert verify_password_sync(None, "timing-equaliser") is False


@pytest.mark.parametrize("password", [PASSWORD, "timing-equaliser", ""])
def test_verify_against_an_empty_stored_hash_is_false(password: str) -> None:
    # Not even the dummy hash's own password: an empty stored value once matched it.
    assert verify_password_sync("", password) is False


def test_verify_against_a_plain_text_stored_value_is_false() -> None:
    assert verify_password_sync(PASSWORD, PASSWORD) is False


@pytest.mark.parametrize("stored", ["not-a-hash", "$argon2id$garbage", "$2b$12$abcdefghijklmnopqrstuv"])
def test_verify_against_a_malformed_hash_is_false(stored: str) -> None:
    assert verify_password_sync(stored, PASSWORD) is False


def test_unicode_passwords_round_trip() -> None:
    password = "pässwörd 密码 🔑"
    assert verify_password_sync(hash_password_sync(password), password) is True


def test_hash_made_with_current_parameters_does_not_need_rehash() -> None:
    assert needs_rehash(hash_password_sync(PASSWORD)) is False


def test_hash_needs_rehash_after_time_cost_changes() -> None:
    stored = hash_password_sync(PASSWORD)
    configure_password_hasher(**{**SESSION_PARAMETERS, "time_cost": 2})
    assert needs_rehash(stored) is True


def test_hash_needs_rehash_after_memory_cost_changes() -> None:
    stored = hash_password_sync(PASSWORD)
    configure_password_hasher(**{**SESSION_PARAMETERS, "memory_cost_kib": 16 * 1024})
    assert needs_rehash(stored) is True


def test_hash_needs_rehash_after_parallelism_changes() -> None:
    stored = hash_password_sync(PASSWORD)
    configure_password_hasher(**{**SESSION_PARAMETERS, "parallelism": 2})
    assert needs_rehash(stored) is True


def test_old_hash_still_verifies_after_parameters_change() -> None:
    stored = hash_password_sync(PASSWORD)
    configure_password_hasher(**{**SESSION_PARAMETERS, "time_cost": 2})
    assert verify_password_sync(stored, PASSWORD) is True


def test_new_hashes_use_the_reconfigured_parameters() -> None:
    configure_password_hasher(**{**SESSION_PARAMETERS, "time_cost": 2})
    assert "$m=8192,t=2,p=1$" in hash_password_sync(PASSWORD)


def test_non_argon2_hash_does_not_need_rehash() -> None:
    assert needs_rehash("$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234") is False


async def test_async_hash_is_argon2id() -> None:
    assert (await hash_password(PASSWORD)).startswith("$argon2id$")


async def test_async_verify_accepts_the_right_password() -> None:
    assert await verify_password(await hash_password(PASSWORD), PASSWORD) is True


async def test_async_verify_rejects_a_wrong_password() -> None:
    assert await verify_password(await hash_password(PASSWORD), "wrong password") is False


async def test_async_verify_without_a_stored_hash_is_false() -> None:
    assert await verify_password(None, PASSWORD) is False


async def test_async_hash_is_verifiable_synchronously() -> None:
    assert verify_password_sync(await hash_password(PASSWORD), PASSWORD) is True
