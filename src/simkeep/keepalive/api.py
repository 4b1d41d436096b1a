"""JSON API of the keep-alive domain: single usage events, undoing a recycling (admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession, require_staff
from simkeep.keepalive import service
from simkeep.models import StaffRole
from simkeep.network.operations import commit_and_apply
from simkeep.routing import OneTripRoute

router = APIRouter(route_class=OneTripRoute, tags=["keepalive"])
Admin = Annotated[Actor, Depends(require_staff(StaffRole.ADMIN))]


class UsageEventCreate(BaseModel):
    """One usage event as a mediation system reports it."""

    event_id: str = Field(min_length=1, max_length=80)
    msisdn: str = Field(min_length=1, max_length=16)
    kind: str = Field(min_length=1, max_length=16)
    occurred_at: str = Field(min_length=1, max_length=40)


class UsageEventRead(BaseModel):
    """What became of the event."""

    event_id: str
    duplicate: bool
    counted: bool
    last_activity_at: datetime | None
    deadline_at: datetime | None
    days_left: int | None


class LineRestored(BaseModel):
    """A line whose recycling was undone."""

    msisdn: str
    status: str
    deadline_at: datetime | None


@router.post("/usage-events", response_model=UsageEventRead)
def post_usage_event(body: UsageEventCreate, session: DbSession, actor: Admin) -> UsageEventRead:  # noqa: ARG001
    """Record one usage event (idempotent by ``event_id``; a duplicate is answered, not recorded twice)."""
    result = service.record_usage(
        session, event_id=body.event_id, msisdn=body.msisdn, kind=body.kind, occurred_at=body.occurred_at
    )
    session.commit()
    return UsageEventRead(**result.__dict__)


@router.post("/lines/{msisdn}/recycling:undo", response_model=LineRestored)
def undo_recycling(msisdn: str, session: DbSession, settings: AppSettings, actor: Admin) -> LineRestored:
    """Undo a recycling within the grace, unless the number was given to someone else."""
    line = service.restore_line(session, settings, msisdn=msisdn, actor=actor)
    commit_and_apply(session, settings)
    return LineRestored(msisdn=line.msisdn, status=str(line.status), deadline_at=line.deadline_at)
