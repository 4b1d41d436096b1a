"""Password hashing, keyed hashes, and random references and tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud at a counter


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    # OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): strong, and cheap enough that sign-in floods
    # cannot exhaust a 2-core server. Hashes made with other parameters still verify.
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher().hash("simkeep-dummy-password")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; with no hash it still spends the time of a real check."""
    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def keyed_hash(secret_key: str, value: str, *, purpose: str) -> str:
    """HMAC-SHA256 of ``value`` under a key derived for ``purpose`` (hex)."""
    key = hmac.new(secret_key.encode(), purpose.encode(), hashlib.sha256).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two strings without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_token() -> str:
    """A random bearer token."""
    return secrets.token_urlsafe(32)


def new_reference(prefix: str) -> str:
    """A random human-friendly reference such as ``RO-7KQ2M9XA``."""
    return prefix + "-" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8))
