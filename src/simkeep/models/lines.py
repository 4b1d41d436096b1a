"""Plans and lines (the phone numbers)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type


class LineStatus(enum.StrEnum):
    """Where a line is in its life."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    RECYCLED = "recycled"


class SuspensionReason(enum.StrEnum):
    """Why a line is suspended."""

    LOST = "lost"
    STOLEN = "stolen"
    ADMINISTRATIVE = "administrative"


class Plan(Base):
    """A tariff plan; keep-alive policies hang off it."""

    __tablename__ = "plans"
    __table_args__ = (CheckConstraint("aging_days >= 45", name="aging_at_least_45"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    inactivity_days: Mapped[int] = mapped_column(default=180)
    #: Days left at which the holder is reminded, largest first.
    reminder_days: Mapped[list[int]] = mapped_column(JSON, default=lambda: [60, 30, 7, 1])
    #: Days after the deadline during which an admin may undo a recycling.
    grace_days: Mapped[int] = mapped_column(default=30)
    #: Days a recycled number rests in quarantine before it may be given out again (never below 45).
    aging_days: Mapped[int] = mapped_column(default=90)
    #: Usage event kinds that count as chargeable activity for this plan.
    counting_kinds: Mapped[list[str]] = mapped_column(
        JSON, default=lambda: ["voice", "sms", "data", "topup", "keepalive"]
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Line(Base):
    """A phone number (MSISDN, E.164) held by a subscriber and served by at most one live SIM."""

    __tablename__ = "lines"
    __table_args__ = (
        # The lines whose keep-alive calendar the sweep has still to compute (new, or their plan changed):
        # few at any time, so a partial index that the sweep's other writes never touch.
        Index(
            "ix_lines_deadline_unset",
            "id",
            sqlite_where=text("deadline_at IS NULL"),
            postgresql_where=text("deadline_at IS NULL"),
        ),
        # PostgreSQL: room on each page, so that updates of unindexed columns (recycling a line: status,
        # recycled_at) stay on the page (HOT) instead of inserting into every index of the table.
        {"postgresql_with": {"fillfactor": 90}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(16), unique=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    status: Mapped[LineStatus] = mapped_column(
        enum_type(LineStatus, "line_status"), default=LineStatus.ACTIVE
    )
    suspension_reason: Mapped[SuspensionReason | None] = mapped_column(
        enum_type(SuspensionReason, "suspension_reason")
    )
    sim_id: Mapped[int | None] = mapped_column(ForeignKey("sims.id"), unique=True)
    sim_change_lock: Mapped[bool] = mapped_column(default=False)
    activated_at: Mapped[datetime]
    last_activity_at: Mapped[datetime | None]
    #: When the number would be recycled without further activity (kept up to date with the activity);
    #: ``None`` until the keep-alive sweep computes it. When the sweep next looks at the line is kept apart,
    #: in :class:`simkeep.models.keepalive.LineCalendar`, so that the sweep's daily writes stay off this row.
    deadline_at: Mapped[datetime | None]
    recycled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
