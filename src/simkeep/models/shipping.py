"""Parcels that carry new SIMs to holders, and what their carrier reported of their journey."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type


class ParcelState(enum.StrEnum):
    """A parcel's journey, in order; ``returned`` ends it without delivery."""

    LABEL_CREATED = "label_created"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    DELIVERED = "delivered"
    RETURNED = "returned"


class Parcel(Base):
    """The parcel of one shipment of an order (a reshipment after a return is a new parcel)."""

    __tablename__ = "parcels"
    __table_args__ = (UniqueConstraint("carrier", "tracking_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("replacement_orders.id"), index=True)
    carrier: Mapped[str] = mapped_column(String(32))
    tracking_number: Mapped[str] = mapped_column(String(64))
    state: Mapped[ParcelState] = mapped_column(enum_type(ParcelState, "parcel_state"))
    region: Mapped[str] = mapped_column(String(64))
    expected_on: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The carrier's time of the newest event applied; older events are out of order and ignored.
    last_event_at: Mapped[datetime | None]


class ParcelEvent(Base):
    """One tracking event as the carrier sent it (kept also when ignored, with why)."""

    __tablename__ = "parcel_events"
    __table_args__ = (UniqueConstraint("carrier", "event_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    parcel_id: Mapped[int] = mapped_column(ForeignKey("parcels.id"), index=True)
    carrier: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(80))
    state: Mapped[ParcelState] = mapped_column(enum_type(ParcelState, "parcel_event_state"))
    occurred_at: Mapped[datetime]
    location: Mapped[str | None] = mapped_column(String(120))
    applied: Mapped[bool] = mapped_column(default=True)
    note: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
