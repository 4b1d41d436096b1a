"""The evidence vault: document photos and selfies encrypted at rest with AES-256-GCM.

Keys come from ``SIMKEEP_VAULT_KEYS`` as ``id:base64key[,id:base64key...]``: the first key encrypts, every
listed key decrypts, so keys rotate by putting a new one first and keeping the old ones until their
evidence is purged. Each file has its own random 96-bit nonce; the key id and the file's reference are
bound as associated data, so a ciphertext cannot be swapped between rows. Outside production, with no keys
configured, a key is derived from the secret key (id ``derived``); production refuses to start without
real vault keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from simkeep.config import Settings
from simkeep.errors import DomainError

DERIVED_KEY_ID = "derived"


class VaultError(DomainError):
    """The vault cannot encrypt or decrypt (missing key, tampered data)."""

    code = "VAULT_ERROR"


class VaultMisconfigured(ValueError):
    """The vault keys in the settings are unusable."""


@dataclass(frozen=True)
class Sealed:
    """An encrypted file: which key, the nonce, the ciphertext with its tag."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


def parse_keys(spec: str) -> dict[str, bytes]:
    """``id:base64key,...`` to an ordered mapping; every key must be 32 bytes (AES-256)."""
    keys: dict[str, bytes] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key_id, sep, encoded = part.partition(":")
        if not sep or not key_id or len(key_id) > 32:
            msg = "each vault key is written id:base64key, with an id of at most 32 characters"
            raise VaultMisconfigured(msg)
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            msg = f"vault key {key_id!r} is not valid base64"
            raise VaultMisconfigured(msg) from exc
        if len(key) != 32:
            msg = f"vault key {key_id!r} must be 32 bytes (AES-256)"
            raise VaultMisconfigured(msg)
        keys[key_id] = key
    return keys


#: A random 32-byte key has about 30 different byte values; fewer than this marks a made-up placeholder
#: ("0" * 32, "changeme" repeated, all zero bytes). A random key falls below it with a chance of about 3e-17.
MIN_DISTINCT_KEY_BYTES = 16


def check_settings(settings: Settings) -> None:
    """Refuse production without real vault keys (none, or a placeholder); validate whatever is configured."""
    keys = parse_keys(settings.vault_keys)
    if settings.environment != "production":
        return
    if not keys:
        msg = "SIMKEEP_VAULT_KEYS must hold at least one 32-byte key in production"
        raise VaultMisconfigured(msg)
    for key_id, key in keys.items():
        if len(set(key)) < MIN_DISTINCT_KEY_BYTES:
            msg = f"vault key {key_id!r} is a placeholder, not a random key; make one with os.urandom(32)"
            raise VaultMisconfigured(msg)


class Vault:
    """Seal and open evidence files."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        if not keys:
            msg = "the vault needs at least one key"
            raise VaultMisconfigured(msg)
        self._keys = keys
        self._current = next(iter(keys))
        # One cipher object per key, made once (building it costs as much as sealing a small value).
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}

    @property
    def current_key_id(self) -> str:
        """The id of the key that encrypts new files."""
        return self._current

    def current_encrypt(self) -> Callable[[bytes, bytes, bytes | None], bytes]:
        """The current key's AES-GCM ``encrypt(nonce, plaintext, aad)``, for bulk sealing that writes the
        same form as :meth:`seal` (``simkeep.sims.secrets.seal_many``); the key itself stays inside."""
        return self._ciphers[self._current].encrypt

    def seal(self, plaintext: bytes, *, reference: str) -> Sealed:
        """Encrypt ``plaintext`` under the current key, bound to ``reference``."""
        nonce = os.urandom(12)
        aad = f"{self._current}|{reference}".encode()
        return Sealed(self._current, nonce, self._ciphers[self._current].encrypt(nonce, plaintext, aad))

    def open(self, sealed: Sealed, *, reference: str) -> bytes:
        """Decrypt; refuses an unknown key id or a ciphertext that was changed or moved."""
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise VaultError(f"The vault key {sealed.key_id!r} is no longer configured.")
        try:
            return cipher.decrypt(sealed.nonce, sealed.ciphertext, f"{sealed.key_id}|{reference}".encode())
        except InvalidTag as exc:
            raise VaultError("The evidence file failed its integrity check.") from exc


@lru_cache(maxsize=4)
def _vault_for(spec: str, secret_key: str, environment: str) -> Vault:
    keys = parse_keys(spec)
    if not keys:
        if environment == "production":
            msg = "SIMKEEP_VAULT_KEYS must be set in production"
            raise VaultMisconfigured(msg)
        derived = hmac.new(secret_key.encode(), b"simkeep-evidence-vault", hashlib.sha256).digest()
        keys = {DERIVED_KEY_ID: derived}
    return Vault(keys)


def get_vault(settings: Settings) -> Vault:
    """The process's vault for these settings."""
    return _vault_for(settings.vault_keys, settings.secret_key, settings.environment)
