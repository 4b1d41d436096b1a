"""The embedded HLR: simkeep's own table of which IMSI serves which number.

It plays the part of osmo-hlr's subscriber table (DOMAIN.md section 7) for the embedded default and tests:
MSISDN unique, network access mode ``cs+ps`` (live) or ``none`` (barred).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow


class EmbeddedHlrSubscriber(Base):
    """One IMSI known to the embedded HLR."""

    __tablename__ = "embedded_hlr_subscribers"

    imsi: Mapped[str] = mapped_column(String(15), primary_key=True)
    msisdn: Mapped[str | None] = mapped_column(String(16), unique=True)
    network_access_mode: Mapped[str] = mapped_column(String(8), default="cs+ps")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
