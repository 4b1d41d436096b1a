"""A SIM's authentication secrets (K and OPc for Milenage, Ki for COMP128), sealed at rest.

They arrive with the SIM stock file, are sealed by the vault (AES-256-GCM, bound to the SIM's ICCID so a
sealed value cannot be moved to another SIM) and are opened only to provision the SIM in the HLR. The
stored form is ``key_id:nonce:ciphertext`` (nonce and ciphertext base64); the algorithm is kept beside it
in clear (``sims.auth_algorithm``) because it is not a secret.
"""

from __future__ import annotations

import base64
import binascii
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
