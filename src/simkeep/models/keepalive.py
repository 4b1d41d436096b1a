"""Keeping numbers alive: usage events, reminders sent, recyclings and the number pool."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from simkeep.db.base import Base, utcnow
from simkeep.models._types import enum_type, identifier


class UsageKind(enum.StrEnum):
    """Kinds of usage a mediation system reports."""

    VOICE = "voice"
    SMS = "sms"
    DATA = "data"
    TOPUP = "topup"
    KEEPALIVE = "keepalive"  # a keep-alive purchase


class UsageEvent(Base):
    """One usage event of a line, as the operator's mediation system reported it (deduplicated by id)."""

    __tablename__ = "usage_events"

    #: The mediation system's id of the event, which deduplicates events (no surrogate key: migration 0018).
    event_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    kind: Mapped[UsageKind] = mapped_column(enum_type(UsageKind, "usage_kind"))
    occurred_at: Mapped[datetime]
    counted: Mapped[bool]  # whether the plan counts this kind as chargeable activity
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class LineCalendar(Base):
    """What the keep-alive sweep needs of a live line: its plan, its last activity (or activation) and when
    the sweep next has something to do for it (a reminder point or the deadline).

    A narrow table of its own: the sweep reads and rewrites the due lines' rows here, and touches the wide
    ``lines`` row (with all its indexes) only to recycle a line. One row per live line whose deadline is
    computed (``lines.deadline_at`` set), none for a recycled line; ``plan_id`` and ``since`` equal the
    line's ``plan_id`` and ``COALESCE(last_activity_at, activated_at)``. Written only by
    :mod:`simkeep.keepalive` (sweep, activity, undo, number assignment, plan rescheduling).
    """

    __tablename__ = "line_calendar"
    # PostgreSQL: room in each page for an updated row (migration 0015), so the activity import's update of
    # ``since`` (no index holds it) is a HOT update that writes no index entry.
    __table_args__ = {"postgresql_with": {"fillfactor": 80}}  # noqa: RUF012 - SQLAlchemy's declarative form

    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"), primary_key=True, autoincrement=False)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"))
    since: Mapped[datetime]
    next_action_at: Mapped[datetime] = mapped_column(index=True)


class KeepAliveReminder(Base):
    """A reminder sent for one reminder point of one deadline (a new deadline starts a new cycle)."""

    __tablename__ = "keepalive_reminders"
    __table_args__ = (UniqueConstraint("line_id", "deadline_at", "days_left"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Not indexed alone: the unique key starts with it. No foreign key either: on PostgreSQL its check
    #: locks the referenced ``lines`` row (``FOR KEY SHARE``), a write to the wide row's page for every
    #: reminder (gigabytes of WAL for the daily sweep over 10M lines). The sweep writes reminders only for
    #: lines with a ``line_calendar`` row, whose own foreign key checks the line; lines are never deleted.
    line_id: Mapped[int]
    deadline_at: Mapped[datetime]
    days_left: Mapped[int]
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class NumberState(enum.StrEnum):
    """A number in the operator's pool."""

    QUARANTINED = "quarantined"  # recycled, resting until its aging ends
    AVAILABLE = "available"
    ASSIGNED = "assigned"


class PoolNumber(Base):
    """A number that left a holder: where it is in its aging, and who has it now."""

    __tablename__ = "number_pool"

    msisdn: Mapped[str] = mapped_column(identifier(16), primary_key=True)
    state: Mapped[NumberState] = mapped_column(enum_type(NumberState, "number_state"), index=True)
    recycled_at: Mapped[datetime]
    available_at: Mapped[datetime]
    assigned_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NumberRecycling(Base):
    """History: a number was taken from one holder (recycled) and, later, given to another.

    Answers "was this number recycled after date D" (CAMARA Number Recycling): yes when a new subscriber
    was given the number after D.
    """

    __tablename__ = "number_recyclings"
    __table_args__ = (Index("ix_number_recyclings_msisdn_recycled", "msisdn", "recycled_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    msisdn: Mapped[str] = mapped_column(identifier(16))
    line_id: Mapped[int] = mapped_column(ForeignKey("lines.id"))
    recycled_at: Mapped[datetime]
    reassigned_at: Mapped[datetime | None]
    new_line_id: Mapped[int | None] = mapped_column(ForeignKey("lines.id"))
    undone_at: Mapped[datetime | None]


class RelyingParty(Base):
    """A relying party (bank, app) allowed to call the CAMARA APIs with OAuth2 client credentials."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(500))  # space-separated
    active: Mapped[bool] = mapped_column(default=True)
    requests_per_second: Mapped[int] = mapped_column(default=100)
    daily_quota: Mapped[int] = mapped_column(default=1_000_000)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    secret_rotated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiQueryBatch(Base):
    """CAMARA queries of one client, written together: which client asked about which number, when, and the
    answer, for the holder's privacy and for billing.

    Every query is kept, packed: each API worker writes its buffered queries once a second as one row per
    client and UTC day, the queries in ``entries`` (a JSON array of ``[api, msisdn, answer, status,
    asked_us]`` in the order asked; ``asked_us``: microseconds since the epoch, UTC). At tens of thousands
    of checks a second a row per query cost the database a heap row and two index entries per check, whose
    bursts of work took the cores the checks needed (migration 0013). A batch's queries were all asked in
    ``[first_at, last_at]`` on one UTC day; ``answered`` counts those not refused for rate or quota (429),
    which the daily quota adds up by ``last_at``.
    """

    __tablename__ = "api_query_batches"
    __table_args__ = (Index("ix_api_query_batches_client_last", "client_id", "last_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"))
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    queries: Mapped[int]
    answered: Mapped[int]
    entries: Mapped[str] = mapped_column(Text)
