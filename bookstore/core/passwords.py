"""Argon2id password hashing that never blocks the event loop.

Hashing is deliberately expensive (tens of milliseconds of CPU), so every hash and verify runs in a
worker thread, and a capacity limiter bounds how many run at once: a burst of logins then queues
instead of starving every other request of CPU.
"""

from __future__ import annotations

import contextlib
import os
from functools import partial

import anyio.to_thread
from anyio import CapacityLimiter
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "ARGON2_PREFIX",
    "configure_password_hasher",
    "hash_password",
    "hash_password_sync",
    "needs_rehash",
    "verify_password",
    "verify_password_sync",
]

ARGON2_PREFIX = "$argon2"

_hasher = PasswordHasher(type=Type.ID)
# Made on first use, with the configured parameters: hashing at import would cost every process
# the default parameters' 64 MiB of peak memory.
_dummy_hash: str | None = None
# Two concurrent hashes keep both cores busy; more would only queue inside the CPU.
_limiter = CapacityLimiter(max(1, min(2, os.cpu_count() or 1)))


def configure_password_hasher(*, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
    """Set the argon2id cost parameters (from settings) for hashes made from now on.

    Existing hashes keep verifying: their parameters are stored in the hash itself, and
    :func:`needs_rehash` tells when one should be upgraded.
    """
    global _hasher, _dummy_hash
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism, type=Type.ID)
    _dummy_hash = _hasher.hash("timing-equaliser")


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


def verify_password_sync(stored_hash: str | None, password: str) -> bool:
    """Check ``password`` against ``stored_hash``; with no argon2 hash, spend the same time and fail.

    Verifying against a dummy hash for unknown accounts keeps "no such user" and "wrong
    password" indistinguishable by response time. Anything stored that is not an argon2 hash (an
    empty string, a plain text written past the service) matches no password at all.
    """
    global _dummy_hash
    if stored_hash is None or not stored_hash.startswith(ARGON2_PREFIX):
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash("timing-equaliser")
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            _hasher.verify(_dummy_hash, password)
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return stored_hash.startswith(ARGON2_PREFIX) and _hasher.check_needs_rehash(stored_hash)


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(partial(hash_password_sync, password), limiter=_limiter)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    return await anyio.to_thread.run_sync(partial(verify_password_sync, stored_hash, password), limiter=_limiter)
