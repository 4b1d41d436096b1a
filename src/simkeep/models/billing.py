"""The fee schedule and payments (charges and refunds)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type


class PaymentKind(enum.StrEnum):
    """Money in or money back."""

    CHARGE = "charge"
    REFUND = "refund"


class PaymentMethod(enum.StrEnum):
    """How a fee was settled."""

    CASH = "cash"
    ONLINE = "online"
    WAIVED = "waived"


class Fee(Base):
    """The replacement fee for a channel and SIM kind, in minor units (fen)."""

    __tablename__ = "fees"
    __table_args__ = (UniqueConstraint("channel", "sim_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    sim_kind: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Payment(Base):
    """A charge for an order, or the refund of one."""

    __tablename__ = "payments"
    __table_args__ = (UniqueConstraint("order_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("replacement_orders.id"))
    kind: Mapped[PaymentKind] = mapped_column(enum_type(PaymentKind, "payment_kind"))
    method: Mapped[PaymentMethod] = mapped_column(enum_type(PaymentMethod, "payment_method"))
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(100))
    recorded_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(String(500))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
