"""CAMARA event subscriptions (sim-swap-subscriptions 0.3): who wants to hear of which number's SIM swaps."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type, identifier


class SubscriptionStatus(enum.StrEnum):
    """The spec's statuses that simkeep uses (creation is synchronous, so no ACTIVATION_REQUESTED)."""

    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"


class CamaraSubscription(Base):
    """One relying party's subscription to the SIM swaps of one number, with its sink and sealed credential.

    The sink credential (a bearer token, or an identifier and secret) is sealed with the vault under the
    subscription's public id; it is wiped once the subscription-ended event has been delivered.
    """

    __tablename__ = "camara_subscriptions"
    __table_args__ = (Index("ix_camara_subscriptions_line_status", "line_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    msisdn: Mapped[str] = mapped_column(identifier(16))
    #: Created with a token bound to the number: answers leave the phone number out, as the spec says.
    three_legged: Mapped[bool] = mapped_column(default=False)
    event_type: Mapped[str] = mapped_column(String(100))
    sink: Mapped[str] = mapped_column(String(2048))
    credential_type: Mapped[str | None] = mapped_column(String(16))
    credential_key_id: Mapped[str | None] = mapped_column(String(32))
    credential_nonce: Mapped[bytes | None] = mapped_column(LargeBinary(12))
    credential_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    access_token_expires_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    max_events: Mapped[int | None]
    events_queued: Mapped[int] = mapped_column(default=0)
    status: Mapped[SubscriptionStatus] = mapped_column(enum_type(SubscriptionStatus, "subscription_status"))
    termination_reason: Mapped[str | None] = mapped_column(String(32))
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CamaraWorker(Base):
    """An API worker process serving the CAMARA routes, as last seen; the live ones share each client's rate.

    Each worker writes its row about once a second (with the query log) and divides every client's requests
    per second by the number of workers seen in the last few seconds, so a rate holds across workers
    without a database round trip on the request path.
    """

    __tablename__ = "camara_workers"

    worker_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(index=True)


class CamaraChange(Base):
    """The change feed of the SIM Swap facts: a number whose line's facts changed (a new line; its status,
    number or activation; a SIM change; a deletion), written by database triggers in the changing
    transaction (migration 0008). Every API worker polls it to keep its copy of the facts fresh
    (:mod:`simkeep.camara.facts`); rows older than ten minutes are pruned.
    """

    __tablename__ = "camara_changes"
    # Only PostgreSQL fills xid (SQLite's pollers go by id): the partial index costs SQLite nothing per row.
    __table_args__ = (
        Index(
            "ix_camara_changes_xid",
            "xid",
            postgresql_where=text("xid IS NOT NULL"),
            sqlite_where=text("xid IS NOT NULL"),
        ),
    )

    #: Grows with every change; pruning never removes the newest row, so an id is never handed out twice
    #: (SQLite reuses the largest rowid only once it is deleted) and "rows after the last id seen" holds.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    msisdn: Mapped[str] = mapped_column(identifier(16))
    #: PostgreSQL: the writing transaction's id (pg_current_xact_id); NULL on SQLite.
    xid: Mapped[int | None] = mapped_column(BigInteger)
    changed_at: Mapped[datetime] = mapped_column(server_default=func.current_timestamp())
