"""Stores, staff users and their roles."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type


class StaffRole(enum.StrEnum):
    """What a staff user may do: clerks serve a store's counter, reviewers decide online orders."""

    CLERK = "clerk"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class Store(Base):
    """A shop (营业厅) that holds SIM stock and serves holders at a counter."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffUser(Base):
    """A person working for the operator; clerks belong to one store."""

    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[StaffRole] = mapped_column(enum_type(StaffRole, "staff_role"))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
