"""The job queue for admins: what is queued, what died and why, and retrying dead jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.auth.deps import DbSession, require_staff
from simkeep.jobs import service
from simkeep.models import Job, JobState, StaffRole
from simkeep.routing import OneTripRoute

router = APIRouter(route_class=OneTripRoute, tags=["jobs"])
Admin = Annotated[Actor, Depends(require_staff(StaffRole.ADMIN))]


class JobRead(BaseModel):
    """One job."""

    id: int
    kind: str
    key: str
    state: JobState
    attempts: int
    max_attempts: int
    run_at: datetime
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class JobList(BaseModel):
    """Jobs, newest first, with the count in each state."""

    counts: dict[str, int]
    jobs: list[JobRead]


class JobRetry(BaseModel):
    """Dead jobs to queue again."""

    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(min_length=1, max_length=1000)


def _read(job: Job) -> JobRead:
    return JobRead.model_validate(job, from_attributes=True)


@router.get("/jobs", response_model=JobList)
def list_jobs(
    session: DbSession,
    actor: Admin,  # noqa: ARG001 - admits admins only
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JobList:
    """The newest jobs, optionally in one state (``dead`` for the dead letters)."""
    return JobList(
        counts=service.counts(session),
        jobs=[_read(j) for j in service.list_jobs(session, state=state, limit=limit)],
    )


@router.post("/jobs:retry", response_model=list[JobRead])
def retry_jobs(body: JobRetry, session: DbSession, actor: Admin) -> list[JobRead]:
    """Queue dead jobs again with fresh tries; refused whole if one is unknown or not dead (audited)."""
    jobs = service.retry(session, sorted(set(body.ids)))
    data: dict[str, Any] = {"ids": [j.id for j in jobs]}
    record(
        session, actor=actor.label, action="jobs.retried", subject_type="system", subject_id="jobs", data=data
    )
    session.commit()
    return [_read(j) for j in jobs]
