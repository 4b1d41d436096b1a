"""Subscribers: the registered (real-name) holders of numbers."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type, identifier


class DocumentType(enum.StrEnum):
    """The identity document a holder registered with."""

    CN_RIC = "cn_ric"
    PASSPORT = "passport"


class Language(enum.StrEnum):
    """Languages the portal and the notifications speak."""

    ZH_CN = "zh-CN"
    EN = "en"


class Subscriber(Base):
    """A real-name holder.

    The document number is never stored in clear: only a keyed HMAC (to compare a typed number) and the last
    four characters (to show it masked to staff).
    """

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    real_name: Mapped[str] = mapped_column(String(200))
    document_type: Mapped[DocumentType] = mapped_column(enum_type(DocumentType, "document_type"))
    document_number_hmac: Mapped[str] = mapped_column(identifier(64), index=True)
    document_number_last4: Mapped[str] = mapped_column(String(4))
    document_country: Mapped[str] = mapped_column(String(3), default="CHN")
    contact_email: Mapped[str | None] = mapped_column(String(254))
    contact_phone: Mapped[str | None] = mapped_column(String(16))
    delivery_address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    language: Mapped[Language] = mapped_column(enum_type(Language, "language"), default=Language.ZH_CN)
    service_password_hash: Mapped[str | None] = mapped_column(String(200))
    external_ref: Mapped[str | None] = mapped_column(identifier(64), unique=True)
    contact_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
