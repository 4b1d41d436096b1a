"""Replacement-SIM orders (补卡) and their timeline.

The states and the transitions between them live in :mod:`simkeep.replacements.workflow`; nothing else
assigns ``state``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type


class Channel(enum.StrEnum):
    """Where the replacement is asked for and how the new SIM reaches the holder."""

    STORE = "store"
    ONLINE_MAIL = "online_mail"
    ESIM = "esim"


class OrderState(enum.StrEnum):
    """The states of a replacement order."""

    SUBMITTED = "submitted"
    VERIFYING = "verifying"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    SIM_ASSIGNED = "sim_assigned"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    ON_HOLD = "on_hold"  # the parcel came back: staff reship it or cancel the order
    ACTIVATING = "activating"  # the number is moving in an external HLR (a network operation runs)
    ACTIVATED = "activated"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ReplacementOrder(Base):
    """An application for a new SIM for a line; at most one open per line."""

    __tablename__ = "replacement_orders"
    __table_args__ = (Index("ix_replacement_orders_state_created", "state", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    open_line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"), unique=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    channel: Mapped[Channel] = mapped_column(enum_type(Channel, "order_channel"))
    sim_kind: Mapped[str] = mapped_column(String(16))
    state: Mapped[OrderState] = mapped_column(enum_type(OrderState, "order_state"))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), index=True)
    old_sim_id: Mapped[int | None] = mapped_column(ForeignKey("sims.id"))
    new_sim_id: Mapped[int | None] = mapped_column(ForeignKey("sims.id"), unique=True)
    fee_amount_minor: Mapped[int]
    fee_currency: Mapped[str] = mapped_column(String(3))
    fee_waived: Mapped[bool] = mapped_column(default=False)
    assurance: Mapped[str] = mapped_column(String(32))
    proofs: Mapped[list[str]] = mapped_column(JSON)
    delivery_address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    tracking_number: Mapped[str | None] = mapped_column(String(64))
    decision_reason: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    expires_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class OrderEvent(Base):
    """One transition of an order, for its timeline."""

    __tablename__ = "order_events"
    __table_args__ = (Index("ix_order_events_order_at", "order_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("replacement_orders.id"))
    transition: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    note: Mapped[str] = mapped_column(String(500), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)
