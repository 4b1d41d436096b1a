"""eSIM profiles ordered from an SM-DP+ over ES2+ (SGP.22 v2.5), and the progress the SM-DP+ reports."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type, identifier


class EsimProfileState(enum.StrEnum):
    """The profile's state as simkeep last knew it (SGP.22 profile states, plus simkeep's own ends)."""

    REQUESTED = "requested"  # nothing asked of the SM-DP+ yet
    ALLOCATED = "allocated"  # downloadOrder succeeded
    CONFIRMED = "confirmed"  # confirmOrder without release
    RELEASED = "released"  # confirmOrder with releaseFlag, or releaseProfile: the holder may download
    DOWNLOADED = "downloaded"
    INSTALLED = "installed"
    ENABLED = "enabled"
    DELETED = "deleted"
    CANCELLED = "cancelled"  # cancelOrder succeeded
    ERROR = "error"  # the SM-DP+ refused or failed a step: staff see the reason and act


class EsimProfile(Base):
    """The eSIM profile of one eSIM replacement order."""

    __tablename__ = "esim_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("replacement_orders.id"), unique=True)
    sim_id: Mapped[int] = mapped_column(ForeignKey("sims.id"), index=True)
    iccid: Mapped[str] = mapped_column(identifier(20), unique=True)
    eid: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[EsimProfileState] = mapped_column(
        enum_type(EsimProfileState, "esim_profile_state"), default=EsimProfileState.REQUESTED
    )
    smdp_address: Mapped[str | None] = mapped_column(String(255))
    matching_id: Mapped[str | None] = mapped_column(String(64))
    confirmation_code_hash: Mapped[str | None] = mapped_column(String(128))
    error_subject: Mapped[str | None] = mapped_column(String(100))
    error_reason: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(String(500))
    last_progress_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    released_at: Mapped[datetime | None]
    installed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]


class EsimProgressEvent(Base):
    """One handleDownloadProgressInfo call from the SM-DP+, kept once (duplicates are recognised)."""

    __tablename__ = "esim_progress_events"
    __table_args__ = (
        UniqueConstraint("iccid", "notification_point_id", "event_timestamp"),
        Index("ix_esim_progress_events_iccid_received", "iccid", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("esim_profiles.id"))
    iccid: Mapped[str] = mapped_column(identifier(20))
    eid: Mapped[str | None] = mapped_column(String(32))
    notification_point_id: Mapped[int]
    status: Mapped[str] = mapped_column(String(32))
    event_timestamp: Mapped[datetime]
    function_call_identifier: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
