"""Parcels: booked when an order ships, moved along by tracking events, and their effect on the order.

A tracking event is applied only if it moves the parcel forward: events for a parcel that was delivered
or returned, events older than the newest applied one, and events that would move it back are kept with
the reason they were ignored and change nothing. Delivery moves the order to ``delivered`` (and the
holder is sent the activation instructions); a returned parcel puts the order on hold for staff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import Conflict, InvalidInput, NotFound
from simkeep.logging import get_logger
from simkeep.models import Channel, Parcel, ParcelEvent, ParcelState, ReplacementOrder
from simkeep.shipping import regions
from simkeep.shipping.carriers import Label, get_carrier

log = get_logger("simkeep.shipping")

P = ParcelState
RANK = {P.LABEL_CREATED: 0, P.IN_TRANSIT: 1, P.OUT_FOR_DELIVERY: 2, P.DELIVERED: 3, P.RETURNED: 3}
FINAL = frozenset({P.DELIVERED, P.RETURNED})
ADDRESS_FIELDS = ("recipient", "phone", "region", "city", "street")


class AddressInvalid(InvalidInput):
    """A delivery address that a parcel cannot be sent to."""

    code = "ADDRESS_INVALID"


class ParcelNotFound(NotFound):
    """No parcel with that carrier and tracking number."""

    code = "PARCEL_NOT_FOUND"


class EventReplayed(Conflict):
    """A tracking event that was received before (a replayed call)."""

    code = "WEBHOOK_REPLAYED"


@dataclass(frozen=True)
class TrackingEvent:
    """One event of a parcel's journey as a carrier reports it."""

    event_id: str
    tracking_number: str
    state: ParcelState
    occurred_at: datetime
    location: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def validate_address(address: dict[str, Any] | None) -> dict[str, str]:
    """A delivery address with every required field and a known region (its code is added)."""
    if not address:
        raise AddressInvalid("A delivery address is needed for a SIM sent by mail.")
    missing = [f for f in ADDRESS_FIELDS if not str(address.get(f) or "").strip()]
    if missing:
        raise AddressInvalid(f"The delivery address lacks: {', '.join(missing)}.", missing=missing)
    code = regions.region_code(str(address["region"]))
    if code is None:
        raise AddressInvalid(
            "The region of the delivery address is not one we deliver to: give the province, municipality "
            "or autonomous region (for example 广东省 or Guangdong).",
            field="region",
        )
    clean = {k: str(v).strip()[:200] for k, v in address.items() if k in (*ADDRESS_FIELDS, "postal_code")}
    clean["region_code"] = code
    return clean


def book_parcel(
    session: Session, settings: Settings, *, order: ReplacementOrder, tracking_number: str | None
) -> Parcel:
    """Hand the order's SIM to the carrier: a parcel with its tracking number and expected date."""
    address = validate_address(order.delivery_address)
    if tracking_number:
        label = Label("manual", tracking_number.strip()[:64])
    else:
        label = get_carrier(settings).create_label(reference=order.reference, recipient=address)
    taken = session.scalar(
        select(Parcel.id).where(
            Parcel.carrier == label.carrier, Parcel.tracking_number == label.tracking_number
        )
    )
    if taken is not None:
        raise Conflict("That tracking number belongs to another parcel.", code="TRACKING_NUMBER_TAKEN")
    now = utcnow()
    parcel = Parcel(
        order_id=order.id,
        carrier=label.carrier,
        tracking_number=label.tracking_number,
        state=P.LABEL_CREATED,
        region=address["region_code"],
        expected_on=regions.expected_on(settings, address["region_code"], shipped_on=now.date()),
        created_at=now,
        updated_at=now,
        last_event_at=now,
    )
    session.add(parcel)
    session.flush()
    session.add(
        ParcelEvent(
            parcel_id=parcel.id,
            carrier=label.carrier,
            event_id=f"simkeep-label-{parcel.id}",
            state=P.LABEL_CREATED,
            occurred_at=now,
            location=None,
            applied=True,
            note="label created",
            raw={},
        )
    )
    session.flush()
    return parcel


def current_parcel(session: Session, order: ReplacementOrder) -> Parcel | None:
    """The order's newest parcel."""
    return session.scalar(
        select(Parcel).where(Parcel.order_id == order.id).order_by(Parcel.id.desc()).limit(1)
    )


def expected_delivery(session: Session, order: ReplacementOrder) -> date | None:
    """When the order's newest parcel is expected, if it has one (only a mailed SIM travels in a parcel)."""
    if order.channel != Channel.ONLINE_MAIL:
        return None
    parcel = current_parcel(session, order)
    return parcel.expected_on if parcel is not None else None


def journey(session: Session, order: ReplacementOrder) -> list[tuple[Parcel, list[ParcelEvent]]]:
    """Every parcel of the order with its applied events, oldest first."""
    parcels = list(session.scalars(select(Parcel).where(Parcel.order_id == order.id).order_by(Parcel.id)))
    out = []
    for parcel in parcels:
        events = session.scalars(
            select(ParcelEvent)
            .where(ParcelEvent.parcel_id == parcel.id, ParcelEvent.applied.is_(True))
            .order_by(ParcelEvent.occurred_at, ParcelEvent.id)
        )
        out.append((parcel, list(events)))
    return out


def _why_ignored(parcel: Parcel, event: TrackingEvent) -> str | None:
    if parcel.state in FINAL:
        return f"the parcel is already {parcel.state}"
    if parcel.last_event_at is not None and event.occurred_at < parcel.last_event_at:
        return "older than the newest event applied"
    if RANK[event.state] < RANK[parcel.state]:
        return f"would move the parcel back from {parcel.state} to {event.state}"
    return None


def apply_event(session: Session, *, carrier: str, event: TrackingEvent) -> str | None:
    """Record a carrier's event and apply it if it moves the parcel on; returns why it was ignored, if it was.

    Raises :class:`ParcelNotFound` for an unknown parcel and :class:`EventReplayed` for an event id seen
    before; neither changes anything.
    """
    parcel = session.scalar(
        select(Parcel)
        .where(Parcel.carrier == carrier, Parcel.tracking_number == event.tracking_number)
        .with_for_update()
    )
    if parcel is None:
        raise ParcelNotFound("No parcel with that tracking number.")
    seen = session.scalar(
        select(ParcelEvent.id).where(ParcelEvent.carrier == carrier, ParcelEvent.event_id == event.event_id)
    )
    if seen is not None:
        raise EventReplayed("This event was received before.")
    ignored = _why_ignored(parcel, event)
    session.add(
        ParcelEvent(
            parcel_id=parcel.id,
            carrier=carrier,
            event_id=event.event_id,
            state=event.state,
            occurred_at=event.occurred_at,
            location=(event.location or None) and event.location[:120],
            applied=ignored is None,
            note=ignored,
            raw=event.raw,
        )
    )
    if ignored is not None:
        session.flush()
        log.info("parcel.event_ignored", parcel=parcel.id, state=str(event.state), why=ignored)
        return ignored
    previous = parcel.state
    parcel.state = event.state
    parcel.last_event_at = event.occurred_at
    parcel.updated_at = utcnow()
    session.flush()
    if event.state != previous:
        record(
            session,
            actor=f"carrier:{carrier}",
            action=f"parcel.{event.state}",
            subject_type="parcel",
            subject_id=parcel.tracking_number,
            data={"from": str(previous), "event": event.event_id},
        )
        _move_order(session, parcel)
    return None


def _move_order(session: Session, parcel: Parcel) -> None:
    """Delivery moves the order to delivered; a return puts it on hold."""
    from simkeep.replacements import service as orders

    order = session.get(ReplacementOrder, parcel.order_id)
    assert order is not None
    if parcel.state == P.DELIVERED:
        orders.record_delivery(session, order=order)
    elif parcel.state == P.RETURNED:
        orders.hold_for_return(session, order=order, tracking_number=parcel.tracking_number)
