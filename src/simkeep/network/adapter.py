"""The network adapter: which IMSI serves which number in the HLR/HSS.

:class:`NetworkAdapter` is the interface every HLR integration implements (osmo-hlr comes in a later issue,
DOMAIN.md section 7). Its operations are idempotent, so a step that is retried after a crash or a timeout
ends in the same state. :class:`EmbeddedHlr` keeps the table in simkeep's own database, inside the caller's
transaction, so that a change in simkeep and in the network commit or roll back together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.errors import DomainError
from simkeep.models import EmbeddedHlrSubscriber

LIVE = "cs+ps"
BARRED = "none"


class NetworkError(DomainError):
    """The network refused or failed a step; the caller's change must not be recorded as done."""

    code = "NETWORK_FAILURE"


@dataclass(frozen=True)
class NetworkSubscriber:
    """What the HLR knows of one IMSI."""

    imsi: str
    msisdn: str | None
    barred: bool


class NetworkAdapter(Protocol):
    """The HLR/HSS operations simkeep needs. Every operation is idempotent."""

    def provision(self, imsi: str) -> None:
        """Create the IMSI's subscriber entry if absent (no number, not barred)."""

    def bind_number(self, imsi: str, msisdn: str) -> None:
        """Give ``msisdn`` to ``imsi``; fails if another IMSI holds it (MSISDNs are unique)."""

    def unbind_number(self, imsi: str) -> None:
        """Take the number off ``imsi`` (no-op if it has none)."""

    def set_barred(self, imsi: str, *, barred: bool) -> None:
        """Bar (network access mode none) or unbar (cs+ps) the IMSI."""

    def remove(self, imsi: str) -> None:
        """Delete the IMSI's entry (no-op if absent)."""

    def lookup(self, imsi: str) -> NetworkSubscriber | None:
        """The IMSI's entry, or None."""


def move_number(network: NetworkAdapter, *, msisdn: str, old_imsi: str | None, new_imsi: str) -> None:
    """Move a number from the old SIM to the new one, in the order osmo-hlr requires.

    Provision the new IMSI, bar the old one, take the number off it, give it to the new one. Each step is
    idempotent, so the whole move can be repeated from the start after a failure at any step.
    """
    network.provision(new_imsi)
    if old_imsi is not None and old_imsi != new_imsi:
        network.set_barred(old_imsi, barred=True)
        network.unbind_number(old_imsi)
    network.bind_number(new_imsi, msisdn)
    network.set_barred(new_imsi, barred=False)


class EmbeddedHlr:
    """The HLR table in simkeep's own database, changed inside the caller's transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _get(self, imsi: str) -> EmbeddedHlrSubscriber | None:
        return self._session.get(EmbeddedHlrSubscriber, imsi)

    def provision(self, imsi: str) -> None:
        """Create the IMSI's subscriber entry if absent."""
        if self._get(imsi) is None:
            self._session.add(EmbeddedHlrSubscriber(imsi=imsi, msisdn=None, network_access_mode=LIVE))
            self._session.flush()

    def bind_number(self, imsi: str, msisdn: str) -> None:
        """Give ``msisdn`` to ``imsi``."""
        entry = self._get(imsi)
        if entry is None:
            raise NetworkError(f"IMSI {imsi[:5]}… is not provisioned")
        holder = self._session.scalar(
            select(EmbeddedHlrSubscriber).where(EmbeddedHlrSubscriber.msisdn == msisdn)
        )
        if holder is not None and holder.imsi != imsi:
            raise NetworkError("the number is still on another IMSI")
        entry.msisdn = msisdn
        self._session.flush()

    def unbind_number(self, imsi: str) -> None:
        """Take the number off ``imsi``."""
        entry = self._get(imsi)
        if entry is not None and entry.msisdn is not None:
            entry.msisdn = None
            self._session.flush()

    def set_barred(self, imsi: str, *, barred: bool) -> None:
        """Bar or unbar the IMSI."""
        entry = self._get(imsi)
        if entry is None:
            raise NetworkError(f"IMSI {imsi[:5]}… is not provisioned")
        entry.network_access_mode = BARRED if barred else LIVE
        self._session.flush()

    def remove(self, imsi: str) -> None:
        """Delete the IMSI's entry."""
        entry = self._get(imsi)
        if entry is not None:
            self._session.delete(entry)
            self._session.flush()

    def lookup(self, imsi: str) -> NetworkSubscriber | None:
        """The IMSI's entry, or None."""
        entry = self._get(imsi)
        if entry is None:
            return None
        return NetworkSubscriber(entry.imsi, entry.msisdn, entry.network_access_mode == BARRED)


def network_for(session: Session) -> NetworkAdapter:
    """The configured network adapter. The embedded HLR is the default (and, for now, the only one)."""
    return EmbeddedHlr(session)
