"""The embedded HLR: simkeep's own table of which IMSI serves which number.

It plays the part of osmo-hlr's subscriber table (DOMAIN.md section 7) for the embedded default and tests:
MSISDN unique, network access mode ``cs+ps`` (live) or ``none`` (barred).
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type, identifier


class EmbeddedHlrSubscriber(Base):
    """One IMSI known to the embedded HLR."""

    __tablename__ = "embedded_hlr_subscribers"

    imsi: Mapped[str] = mapped_column(identifier(15), primary_key=True)
    msisdn: Mapped[str | None] = mapped_column(identifier(16), unique=True)
    network_access_mode: Mapped[str] = mapped_column(String(8), default="cs+ps")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NetworkOpKind(enum.StrEnum):
    """What a network operation does in the HLR."""

    MOVE = "move"  # provision the new IMSI, bar and unbind the old one, bind the number to the new one
    BAR = "bar"  # a loss report: network access mode none
    UNBAR = "unbar"  # reinstatement after a loss report
    REMOVE = "remove"  # delete an IMSI's subscriber (a replaced SIM after its grace, a recycled line's SIM)


class NetworkOpStatus(enum.StrEnum):
    """Where a network operation is: pending (to run or retry), done, or failed (staff must act)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class NetworkOperation(Base):
    """A change to make in the HLR, written in the same transaction as the change in simkeep that causes it.

    The steps are idempotent; ``step`` counts the ones already done, so a crash or an HLR outage resumes
    where it stopped. ``order_id`` ties a move to the replacement order it activates.
    """

    __tablename__ = "network_operations"
    __table_args__ = (Index("ix_network_operations_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[NetworkOpKind] = mapped_column(enum_type(NetworkOpKind, "network_op_kind"))
    status: Mapped[NetworkOpStatus] = mapped_column(
        enum_type(NetworkOpStatus, "network_op_status"), default=NetworkOpStatus.PENDING
    )
    line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"), index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("replacement_orders.id"), index=True)
    msisdn: Mapped[str | None] = mapped_column(identifier(16))
    old_imsi: Mapped[str | None] = mapped_column(identifier(15))
    new_imsi: Mapped[str | None] = mapped_column(identifier(15))
    step: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    not_before: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(100), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    done_at: Mapped[datetime | None]
