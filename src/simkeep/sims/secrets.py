"""A SIM's authentication secrets (K and OPc for Milenage, Ki for COMP128), sealed at rest.

They arrive with the SIM stock file, are sealed by the vault (AES-256-GCM, bound to the SIM's ICCID so a
sealed value cannot be moved to another SIM) and are opened only to provision the SIM in the HLR. The
stored form is ``key_id:nonce:ciphertext`` (nonce and ciphertext base64); the algorithm is kept beside it
in clear (``sims.auth_algorithm``) because it is not a secret.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from simkeep.identity.vault import Sealed, Vault, VaultError

if TYPE_CHECKING:
    from simkeep.network.adapter import SimAuth


def _reference(iccid: str) -> str:
    return f"sim-auth:{iccid}"


def seal_auth(vault: Vault, *, iccid: str, auth: SimAuth) -> str:
    """The sealed form of ``auth`` for the SIM ``iccid``."""
    plaintext = f"{auth.k}:{auth.opc or ''}".encode()
    sealed = vault.seal(plaintext, reference=_reference(iccid))
    nonce = base64.b64encode(sealed.nonce).decode()
    ciphertext = base64.b64encode(sealed.ciphertext).decode()
    return f"{sealed.key_id}:{nonce}:{ciphertext}"


def open_auth(vault: Vault, *, iccid: str, algorithm: str, sealed: str) -> SimAuth:
    """The SIM's secrets; refuses a value that was changed, moved to another SIM or sealed by a lost key."""
    from simkeep.network.adapter import SimAuth  # the adapter module imports the models

    try:
        key_id, nonce, ciphertext = sealed.split(":")
        box = Sealed(
            key_id, base64.b64decode(nonce, validate=True), base64.b64decode(ciphertext, validate=True)
        )
    except (ValueError, binascii.Error) as exc:
        raise VaultError("The SIM's sealed secrets are malformed.") from exc
    k, _, opc = vault.open(box, reference=_reference(iccid)).decode().partition(":")
    return SimAuth(algorithm=algorithm, k=k, opc=opc or None)


#: Bytes of a vault nonce (AES-GCM's 96 bits); base64 writes each in 16 characters, without padding.
_NONCE_BYTES = 12
_NONCE_CHARS = 16


def seal_many(vault: Vault, secrets: Sequence[tuple[str, str, str | None]]) -> list[str]:
    """:func:`seal_auth` for many SIMs at once: the sealed form of each ``(iccid, k, opc)``, in order.

    The stored form, the key, the associated data and the random 96-bit nonce per SIM are exactly those of
    :func:`seal_auth` (the tests open what this seals with :func:`open_auth`); for bulk imports it skips
    the per-value objects: one cipher, every nonce from one read of the system's random source and
    written in base64 by one call, and the stored text formatted directly.
    """
    if not secrets:
        return []
    key_id = vault.current_key_id
    encrypt = vault.current_encrypt()
    nonces = os.urandom(_NONCE_BYTES * len(secrets))
    nonce_text = base64.b64encode(nonces).decode("ascii")
    b64 = binascii.b2a_base64
    aad = f"{key_id}|{_reference('')}"
    out: list[str] = []
    append = out.append
    for i, (iccid, k, opc) in enumerate(secrets):
        at = i * _NONCE_BYTES
        ciphertext = encrypt(
            nonces[at : at + _NONCE_BYTES], f"{k}:{opc or ''}".encode(), (aad + iccid).encode()
        )
        at = i * _NONCE_CHARS
        append(
            f"{key_id}:{nonce_text[at : at + _NONCE_CHARS]}:{b64(ciphertext, newline=False).decode('ascii')}"
        )
    return out
