"""The job queue's operations: enqueue in the caller's transaction, claim, finish, list and retry.

Claiming is one ``UPDATE ... RETURNING`` over the due jobs; on PostgreSQL the due jobs are picked with
``FOR UPDATE SKIP LOCKED``, so several workers share the queue without waiting on each other or taking a
job twice. On SQLite the write lock (``BEGIN IMMEDIATE``) serialises claims; one worker is enough there. A
claim is a lease: a job whose worker died is queued again when its lease runs out and taken by the next
claim; the lost try counts, and a job lost on its last try is dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput, NotFound
from simkeep.models import Job, JobSchedule, JobState

MAX_ERROR_CHARS = 2000
LEASE_LAPSED = "LeaseLapsed: the worker holding the job stopped or stalled before finishing it"


class JobNotFound(NotFound):
    """No job with that id."""

    code = "JOB_NOT_FOUND"


@dataclass(frozen=True)
class Claimed:
    """A job as a worker holds it."""

    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


def _insert(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def enqueue(
    session: Session,
    *,
    kind: str,
    key: str,
    payload: dict[str, Any] | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 8,
) -> bool:
    """Add a job in the caller's transaction; False when a job with ``key`` exists already (nothing added)."""
    if not key or len(key) > 200:
        raise InvalidInput("A job key is 1 to 200 characters.", code="JOB_KEY_INVALID")
    now = utcnow()
    stmt = (
        _insert(session)(Job)
        .values(
            kind=kind,
            key=key,
            payload=payload or {},
            state=JobState.QUEUED,
            attempts=0,
            max_attempts=max_attempts,
            run_at=run_at or now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(Job.id)
    )
    # A returned id tells whether a row was added (the driver's rowcount is -1 here on PostgreSQL).
    return session.execute(stmt).first() is not None


def requeue_lapsed(session: Session, *, now: datetime | None = None) -> int:
    """Queue again the running jobs whose lease has lapsed (their worker died or stalled); returns how many.

    The lapsed try counts: a job that was on its last try is dead-lettered instead, so a job that kills its
    worker every time ends as a dead letter rather than being taken again for ever.
    """
    now = now or utcnow()
    lapsed = select(Job.id).where(Job.state == JobState.RUNNING, Job.lease_until < now)
    if session.get_bind().dialect.name == "postgresql":
        lapsed = lapsed.with_for_update(skip_locked=True)
    last_try = Job.attempts >= Job.max_attempts
    result = session.execute(
        update(Job)
        .where(Job.id.in_(lapsed.scalar_subquery()), Job.state == JobState.RUNNING)
        .values(
            state=case((last_try, JobState.DEAD), else_=JobState.QUEUED),
            run_at=now,
            locked_by=None,
            lease_until=None,
            last_error=LEASE_LAPSED,
            finished_at=case((last_try, now), else_=None),
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def claim(session: Session, *, worker_id: str, limit: int, lease: timedelta) -> list[Claimed]:
    """Take up to ``limit`` due jobs, oldest first (lapsed leases are queued again first, and count a try).

    The due jobs are read in the order of the ``(state, run_at)`` index, so a claim costs the same with a
    backlog of millions as with ten.
    """
    now = utcnow()
    requeue_lapsed(session, now=now)
    due = (
        select(Job.id)
        .where(Job.state == JobState.QUEUED, Job.run_at <= now)
        .order_by(Job.run_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(
            state=JobState.RUNNING,
            locked_by=worker_id,
            lease_until=now + lease,
            attempts=Job.attempts + 1,
        )
        .returning(Job.id, Job.kind, Job.key, Job.payload, Job.attempts, Job.max_attempts)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def mark_done(session: Session, ids: Sequence[int], *, worker_id: str) -> None:
    """Record jobs as done (only those this worker still holds)."""
    if ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.locked_by == worker_id, Job.state == JobState.RUNNING)
            .values(state=JobState.DONE, finished_at=utcnow(), lease_until=None, last_error=None)
            .execution_options(synchronize_session=False)
        )


def mark_failed(session: Session, job: Claimed, *, error: str, retry_in: timedelta, worker_id: str) -> bool:
    """Record a failed try: queue it again after ``retry_in``, or dead-letter it after its last try.

    Returns True when the job is dead.
    """
    dead = job.attempts >= job.max_attempts
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.locked_by == worker_id, Job.state == JobState.RUNNING)
        .values(
            state=JobState.DEAD if dead else JobState.QUEUED,
            run_at=now if dead else now + retry_in,
            lease_until=None,
            last_error=error[:MAX_ERROR_CHARS],
            finished_at=now if dead else None,
        )
        .execution_options(synchronize_session=False)
    )
    return dead


def due_schedules(session: Session, schedules: dict[str, timedelta]) -> list[str]:
    """The declared schedules that fall due now, advanced to their next time in this transaction.

    Rows are locked (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so with several workers each slot is taken by
    one of them; the job's key names the slot, so even a repeated slot enqueues once.
    """
    now = utcnow()
    existing = {s.name for s in session.scalars(select(JobSchedule))}
    for name in sorted(schedules.keys() - existing):  # one order for every worker: no deadlock
        session.execute(
            _insert(session)(JobSchedule)
            .values(name=name, next_run_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
    stmt = select(JobSchedule).where(JobSchedule.name.in_(list(schedules)), JobSchedule.next_run_at <= now)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    fallen_due = []
    for row in session.scalars(stmt):
        fallen_due.append(f"{row.name}@{row.next_run_at.strftime('%Y%m%dT%H%M%S')}")
        row.last_run_at = now
        row.next_run_at = now + schedules[row.name]
    session.flush()
    return fallen_due


def list_jobs(session: Session, *, state: JobState | None = None, limit: int = 100) -> list[Job]:
    """Jobs, newest first, optionally in one state."""
    stmt = select(Job).order_by(Job.id.desc()).limit(limit)
    if state is not None:
        stmt = stmt.where(Job.state == state)
    return list(session.scalars(stmt))


def counts(session: Session) -> dict[str, int]:
    """How many jobs are in each state."""
    rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
    found = {str(state): int(n) for state, n in rows}
    return {str(s): found.get(str(s), 0) for s in JobState}


def retry(session: Session, ids: Sequence[int]) -> list[Job]:
    """Queue dead jobs again with fresh tries; unknown ids or jobs that are not dead are refused."""
    jobs = list(session.scalars(select(Job).where(Job.id.in_(ids)).with_for_update()))
    missing = sorted(set(ids) - {j.id for j in jobs})
    if missing:
        raise JobNotFound(f"No job with id {missing[0]}.")
    not_dead = [j.id for j in jobs if j.state != JobState.DEAD]
    if not_dead:
        raise InvalidInput(
            f"Only dead jobs can be retried; job {not_dead[0]} is not dead.", code="JOB_NOT_DEAD"
        )
    now = utcnow()
    for j in jobs:
        j.state, j.attempts, j.run_at, j.finished_at, j.lease_until = JobState.QUEUED, 0, now, None, None
    session.flush()
    return jobs


def dead_ids(session: Session) -> list[int]:
    """Every dead job's id."""
    return list(session.scalars(select(Job.id).where(Job.state == JobState.DEAD).order_by(Job.id)))
