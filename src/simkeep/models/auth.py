"""Bearer tokens for staff users and for holders signed in to one line."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type


class TokenKind(enum.StrEnum):
    """Who a token speaks for."""

    STAFF = "staff"
    LINE = "line"


class AuthToken(Base):
    """A bearer token; only its HMAC is stored."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[TokenKind] = mapped_column(enum_type(TokenKind, "token_kind"))
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"), index=True)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"), index=True)
    assurance: Mapped[str] = mapped_column(String(32))
    proof_methods: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
