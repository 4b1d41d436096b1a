"""Every attempt to prove who is asking, passed or failed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow


class ProofAttempt(Base):
    """One proof presented for a line: its method, its outcome and for which action."""

    __tablename__ = "proof_attempts"
    __table_args__ = (Index("ix_proof_attempts_line_at", "line_id", "attempted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("replacement_orders.id"), index=True)
    method: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    passed: Mapped[bool]
    actor: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str] = mapped_column(String(300), default="")
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
