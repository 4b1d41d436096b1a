"""Stateless access tokens for relying parties (HS256 JWTs signed with a key derived from the secret key).

A token carries the client id, its scopes, when it was issued and when it expires, and, for three-legged
use, the phone number it is bound to. Checking one needs no database: the signature, the expiry and the
scopes are enough; what may change on the client (disabled, secret rotated) is checked against the
worker's short-lived cache of the client (:mod:`simkeep.camara.runtime`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from simkeep.camara.errors import CamaraError
from simkeep.config import Settings

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
_PURPOSE = b"camara.access-token"


@dataclass(frozen=True)
class AccessToken:
    """What a verified token says."""

    client_id: str
    scopes: frozenset[str]
    issued_at_ms: int
    expires_at: int
    phone_number: str | None = None


@lru_cache(maxsize=4)
def _key(secret_key: str) -> bytes:
    return hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def issue_token(
    settings: Settings,
    *,
    client_id: str,
    scopes: Sequence[str],
    phone_number: str | None = None,
    now: float | None = None,
) -> tuple[str, int]:
    """A signed token and its lifetime in seconds."""
    now = time.time() if now is None else now
    ttl = settings.camara_token_ttl_seconds
    claims: dict[str, object] = {
        "sub": client_id,
        "scope": " ".join(scopes),
        "iat": int(now),
        "iat_ms": int(now * 1000),
        "exp": int(now) + ttl,
    }
    if phone_number is not None:
        claims["phone_number"] = phone_number
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _HEADER + b"." + payload
    signature = _b64(hmac.new(_key(settings.secret_key), signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode(), ttl


def verify_token(settings: Settings, token: str, *, now: float | None = None) -> AccessToken:
    """The claims of a valid, unexpired token signed by this service; UNAUTHENTICATED otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _HEADER.decode() or len(token) > 4096:
        raise CamaraError("UNAUTHENTICATED")
    signing_input = (parts[0] + "." + parts[1]).encode()
    expected = _b64(hmac.new(_key(settings.secret_key), signing_input, hashlib.sha256).digest())
    if not hmac.compare_digest(expected, parts[2].encode()):
        raise CamaraError("UNAUTHENTICATED")
    try:
        claims = json.loads(_unb64(parts[1]))
        token_info = AccessToken(
            client_id=str(claims["sub"]),
            scopes=frozenset(str(claims["scope"]).split()),
            issued_at_ms=int(claims["iat_ms"]),
            expires_at=int(claims["exp"]),
            phone_number=claims.get("phone_number"),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise CamaraError("UNAUTHENTICATED") from exc
    if (time.time() if now is None else now) >= token_info.expires_at:
        raise CamaraError(
            "UNAUTHENTICATED", "The access token has expired. A new authentication is required."
        )
    return token_info


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; UNAUTHENTICATED when there is none."""
    if not authorization:
        raise CamaraError("UNAUTHENTICATED")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise CamaraError("UNAUTHENTICATED")
    return token.strip()


def require_scope(token: AccessToken, accepted: Sequence[str]) -> None:
    """PERMISSION_DENIED unless the token holds one of the ``accepted`` scopes (the spec's alternatives)."""
    if not token.scopes.intersection(accepted):
        raise CamaraError("PERMISSION_DENIED")
