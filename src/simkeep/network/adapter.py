"""The network adapter: which IMSI serves which number in the HLR/HSS.

:class:`NetworkAdapter` is the interface every HLR integration implements. Its operations are idempotent,
so a step that is retried after a crash or a timeout ends in the same state. :class:`EmbeddedHlr` keeps the
table in simkeep's own database, inside the caller's transaction, so that a change in simkeep and in the
network commit or roll back together (``transactional``). :class:`~simkeep.network.osmo_hlr.OsmoHlr` drives
a running osmo-hlr (DOMAIN.md section 7); its changes take effect at once and do not roll back, so callers
run them outside the database transaction, as durable operations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.errors import DomainError, InvalidInput
from simkeep.models import EmbeddedHlrSubscriber

if TYPE_CHECKING:
    from simkeep.config import Settings

LIVE = "cs+ps"
BARRED = "none"


class NetworkError(DomainError):
    """The network refused or failed a step; the caller's change must not be recorded as done."""

    code = "NETWORK_FAILURE"
    #: Whether repeating the same step later may succeed (the network was unreachable, not refusing).
    retryable: bool = False


class NetworkUnavailable(NetworkError):
    """The HLR could not be reached or did not answer in time; the step may be repeated later."""

    code = "NETWORK_UNAVAILABLE"
    retryable = True


@dataclass(frozen=True)
class NetworkSubscriber:
    """What the HLR knows of one IMSI.

    ``barred`` means no network access at all (mode ``none``). ``access_mode`` is the exact mode (``cs+ps``,
    ``cs``, ``ps`` or ``none``) where the adapter knows it, so that a half-barred entry can be told apart.
    """

    imsi: str
    msisdn: str | None
    barred: bool
    access_mode: str = ""

    @property
    def live(self) -> bool:
        """Whether the IMSI has full access (circuit- and packet-switched)."""
        return self.access_mode == LIVE if self.access_mode else not self.barred


_ALGORITHMS: tuple[str, ...] = ("milenage", "comp128v1", "comp128v2", "comp128v3")
_HEX128 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class SimAuth:
    """A SIM's authentication data, as the HLR needs it to authenticate the card.

    ``milenage`` (USIM, 3G/4G) takes the subscriber key ``k`` and the operator variant ``opc``; the COMP128
    versions (2G SIM) take only ``k`` (the Ki). Keys are 128 bits, 32 hexadecimal characters, stored in lower
    case. Never log or print them.
    """

    algorithm: str
    k: str
    opc: str | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in _ALGORITHMS:
            raise InvalidInput(
                f"Unknown authentication algorithm {self.algorithm!r}; use one of {', '.join(_ALGORITHMS)}.",
                code="INVALID_SIM_AUTH",
            )
        k = self.k.strip().lower() if isinstance(self.k, str) else ""
        if not _HEX128.fullmatch(k):
            raise InvalidInput("The key K must be 32 hexadecimal characters.", code="INVALID_SIM_AUTH")
        object.__setattr__(self, "k", k)
        if self.algorithm == "milenage":
            opc = self.opc.strip().lower() if isinstance(self.opc, str) else ""
            if not _HEX128.fullmatch(opc):
                raise InvalidInput(
                    "Milenage needs OPc as 32 hexadecimal characters.", code="INVALID_SIM_AUTH"
                )
            object.__setattr__(self, "opc", opc)
        elif self.opc is not None:
            raise InvalidInput(f"{self.algorithm} takes no OPc; only Milenage does.", code="INVALID_SIM_AUTH")

    def __repr__(self) -> str:
        return f"SimAuth(algorithm={self.algorithm!r}, k=<hidden>, opc={'<hidden>' if self.opc else None})"


class NetworkAdapter(Protocol):
    """The HLR/HSS operations simkeep needs. Every operation is idempotent."""

    #: True when changes ride on the caller's database transaction (and roll back with it).
    transactional: ClassVar[bool]

    def provision(self, imsi: str, auth: SimAuth | None = None) -> None:
        """Create the IMSI's entry if absent (no number, not barred), with its authentication data."""

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

    def subscribers(self) -> Iterator[NetworkSubscriber]:
        """Every entry in the HLR, for reconciliation."""


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


#: How many of its latest entries an :class:`EmbeddedHlr` keeps referenced.
_HELD_ENTRIES = 8


class EmbeddedHlr:
    """The HLR table in simkeep's own database, changed inside the caller's transaction.

    It does not authenticate SIMs, so the authentication data given to :meth:`provision` is checked (it is a
    :class:`SimAuth`) but not kept.
    """

    transactional: ClassVar[bool] = True

    def __init__(self, session: Session) -> None:
        self._session = session
        # The last entries this adapter has read, held so that the session's identity map (which keeps an
        # object only while something refers to it) answers an operation's later steps without another
        # query. An operation touches two IMSIs; a reconciliation's repairs may touch millions: few are held.
        self._held: dict[str, EmbeddedHlrSubscriber] = {}

    def _get(self, imsi: str) -> EmbeddedHlrSubscriber | None:
        entry = self._session.get(EmbeddedHlrSubscriber, imsi)
        if entry is not None:
            self._keep(entry)
        return entry

    def _keep(self, entry: EmbeddedHlrSubscriber) -> None:
        self._held.pop(entry.imsi, None)
        self._held[entry.imsi] = entry
        if len(self._held) > _HELD_ENTRIES:
            del self._held[next(iter(self._held))]

    def provision(self, imsi: str, auth: SimAuth | None = None) -> None:  # noqa: ARG002 - see the class
        """Create the IMSI's subscriber entry if absent."""
        if self._get(imsi) is None:
            entry = EmbeddedHlrSubscriber(imsi=imsi, msisdn=None, network_access_mode=LIVE)
            self._session.add(entry)
            self._session.flush()
            self._keep(entry)

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
        # Not flushed: the mode touches no unique key, and the next step's flush (or the caller's) writes
        # it, together with a number taken off the same entry.
        entry.network_access_mode = BARRED if barred else LIVE

    def remove(self, imsi: str) -> None:
        """Delete the IMSI's entry."""
        entry = self._get(imsi)
        if entry is not None:
            self._held.pop(imsi, None)
            self._session.delete(entry)
            self._session.flush()

    def lookup(self, imsi: str) -> NetworkSubscriber | None:
        """The IMSI's entry, or None."""
        entry = self._get(imsi)
        if entry is None:
            return None
        return _embedded_entry(entry)

    def subscribers(self) -> Iterator[NetworkSubscriber]:
        """Every entry of the table, by IMSI."""
        query = select(EmbeddedHlrSubscriber).order_by(EmbeddedHlrSubscriber.imsi)
        for entry in self._session.scalars(query.execution_options(yield_per=1000)):
            yield _embedded_entry(entry)


def _embedded_entry(entry: EmbeddedHlrSubscriber) -> NetworkSubscriber:
    mode = entry.network_access_mode
    return NetworkSubscriber(entry.imsi, entry.msisdn, mode == BARRED, mode)


def network_for(session: Session, settings: Settings | None = None) -> NetworkAdapter:
    """The configured network adapter: osmo-hlr when ``settings`` select it, else the embedded HLR."""
    if settings is not None and settings.network_adapter == "osmo-hlr":
        from simkeep.network.osmo_hlr import OsmoHlr

        return OsmoHlr.from_settings(settings)
    return EmbeddedHlr(session)
