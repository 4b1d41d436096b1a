"""Relying-party clients: create, list, disable, rotate their secret, and check their credentials."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from simkeep.camara import repository
from simkeep.camara.errors import OAuthError
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput, NotFound
from simkeep.models import RelyingParty
from simkeep.security import constant_time_equal, keyed_hash

#: Scopes a client may hold: those named in the security sections of the CAMARA specs served here.
KNOWN_SCOPES = frozenset(
    {
        "number-recycling:check",
        "sim-swap",
        "sim-swap:check",
        "sim-swap:retrieve-date",
        "sim-swap-subscriptions:org.camaraproject.sim-swap-subscriptions.v0.swapped:create",
        "sim-swap-subscriptions:read",
        "sim-swap-subscriptions:delete",
    }
)
_SECRET_PURPOSE = "camara.client-secret"  # noqa: S105 - the HMAC purpose label, not a secret
# Compared against when the client id is unknown, so that an unknown client costs what a known one does.
_DUMMY_HASH = "0" * 64


@dataclass(frozen=True)
class IssuedClient:
    """A client as created or rotated: the secret is shown this once and never stored."""

    client: RelyingParty
    secret: str


def secret_hash(settings: Settings, secret: str) -> str:
    """The stored form of a client secret (HMAC-SHA256, hex)."""
    return keyed_hash(settings.secret_key, secret, purpose=_SECRET_PURPOSE)


def parse_scopes(scopes: Sequence[str]) -> list[str]:
    """Scopes, deduplicated in order; unknown ones refused."""
    cleaned: list[str] = []
    for scope in scopes:
        for part in scope.split():
            if part not in KNOWN_SCOPES:
                msg = f"unknown scope {part!r}; known: {', '.join(sorted(KNOWN_SCOPES))}"
                raise InvalidInput(msg, code="UNKNOWN_SCOPE")
            if part not in cleaned:
                cleaned.append(part)
    if not cleaned:
        raise InvalidInput("a client needs at least one scope", code="NO_SCOPE")
    return cleaned


def create_client(
    session: Session,
    settings: Settings,
    *,
    name: str,
    scopes: Sequence[str],
    requests_per_second: int = 100,
    daily_quota: int = 1_000_000,
) -> IssuedClient:
    """Register a relying party; the caller commits and shows the secret once."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("the client name must be 1 to 200 characters", code="INVALID_CLIENT_NAME")
    if requests_per_second < 1 or daily_quota < 1:
        raise InvalidInput("rate and daily quota must be at least 1", code="INVALID_LIMIT")
    cleaned = parse_scopes(scopes)
    secret = secrets.token_urlsafe(32)
    client = RelyingParty(
        client_id="rp_" + secrets.token_hex(12),
        name=name,
        secret_hash=secret_hash(settings, secret),
        scopes=" ".join(cleaned),
        active=True,
        requests_per_second=requests_per_second,
        daily_quota=daily_quota,
        secret_rotated_at=utcnow(),
    )
    session.add(client)
    session.flush()
    return IssuedClient(client, secret)


def list_clients(session: Session) -> Sequence[RelyingParty]:
    """Every client, oldest first."""
    return repository.all_clients(session)


def _get(session: Session, client_id: str) -> RelyingParty:
    client = repository.client_by_client_id(session, client_id)
    if client is None:
        raise NotFound(f"no client {client_id}", code="CLIENT_NOT_FOUND")
    return client


def disable_client(session: Session, *, client_id: str) -> RelyingParty:
    """Refuse this client's credentials and tokens from now on (within the cache time of each worker)."""
    client = _get(session, client_id)
    client.active = False
    session.flush()
    return client


def rotate_secret(session: Session, settings: Settings, *, client_id: str) -> IssuedClient:
    """A new secret; the old one and the tokens issued with it stop working."""
    client = _get(session, client_id)
    secret = secrets.token_urlsafe(32)
    client.secret_hash = secret_hash(settings, secret)
    client.secret_rotated_at = utcnow()
    session.flush()
    return IssuedClient(client, secret)


def authenticate_client(session: Session, settings: Settings, *, client_id: str, secret: str) -> RelyingParty:
    """The active client with these credentials; an unknown id, a wrong secret or a disabled client are one
    ``invalid_client`` and cost the same work (one lookup, one HMAC, one constant-time comparison)."""
    client = repository.client_by_client_id(session, client_id[:64])
    presented = secret_hash(settings, secret)
    stored = client.secret_hash if client is not None else _DUMMY_HASH
    matches = constant_time_equal(presented, stored)
    if client is None or not matches or not client.active:
        raise OAuthError("invalid_client", "Client authentication failed.")
    return client
