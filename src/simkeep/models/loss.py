"""Loss reports (挂失) and their lifting (解挂)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type


class LossReportStatus(enum.StrEnum):
    """Open while the SIM is suspended for this report."""

    OPEN = "open"
    LIFTED = "lifted"
    CLOSED_BY_REPLACEMENT = "closed_by_replacement"


class LossReport(Base):
    """A holder's report that the SIM is lost or stolen; at most one open per line."""

    __tablename__ = "loss_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), index=True)
    sim_id: Mapped[int | None] = mapped_column(ForeignKey("sims.id"))
    open_line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(16))
    status: Mapped[LossReportStatus] = mapped_column(enum_type(LossReportStatus, "loss_report_status"))
    reported_at: Mapped[datetime] = mapped_column(default=utcnow)
    reported_by: Mapped[str] = mapped_column(String(100))
    report_proof: Mapped[str] = mapped_column(String(200))
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(100))
    lift_proof: Mapped[str | None] = mapped_column(String(200))
