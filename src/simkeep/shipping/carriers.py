"""Carrier adapters: hand a parcel to a carrier and get its tracking number.

A real carrier (SF Express, EMS, ...) is reached through its own web API, which no registry package
provides; each would be one more class here. :class:`DemoCarrier` is the built-in **test double**: it
makes tracking numbers itself, and the ``shipping.demo_advance`` job moves its parcels along their
journey over time through the same event path as a carrier's webhook, so the demo shows a full journey.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from simkeep.config import Settings


@dataclass(frozen=True)
class Label:
    """What a carrier answers when it accepts a parcel."""

    carrier: str
    tracking_number: str


class Carrier(Protocol):
    """Accepts parcels."""

    name: str

    def create_label(self, *, reference: str, recipient: dict[str, str]) -> Label:
        """Book the parcel of order ``reference``; idempotent for the same reference."""


class DemoCarrier:
    """A test double of a carrier: deterministic tracking numbers, journeys advanced by a job."""

    name = "demo"

    def create_label(self, *, reference: str, recipient: dict[str, str]) -> Label:  # noqa: ARG002
        """A tracking number derived from the order reference (booking twice gives the same parcel)."""
        digits = int(hashlib.sha256(reference.encode()).hexdigest(), 16) % 10**12
        return Label(self.name, f"DEMO{digits:012d}")


class ManualCarrier:
    """A carrier outside simkeep: staff type the tracking number the carrier printed."""

    name = "manual"

    def create_label(self, *, reference: str, recipient: dict[str, str]) -> Label:  # noqa: ARG002
        """Never books by itself."""
        msg = "the manual carrier needs the tracking number from staff"
        raise ValueError(msg)


def get_carrier(settings: Settings) -> Carrier:
    """The configured carrier."""
    carriers: dict[str, Carrier] = {"demo": DemoCarrier(), "manual": ManualCarrier()}
    try:
        return carriers[settings.shipping_carrier]
    except KeyError:
        msg = f"unknown carrier {settings.shipping_carrier!r} (demo or manual)"
        raise ValueError(msg) from None
