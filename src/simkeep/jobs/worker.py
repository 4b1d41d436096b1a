"""``simkeep worker``: claims due jobs in batches, runs them, and records the outcome.

Each batch runs in one transaction, each job in a savepoint of its own: a job that raises rolls back only
its own changes and is retried after its backoff, or dead-lettered after its last try; the others commit
with their completion. The jobs of a kind declared with a batch handler (``notification.deliver``) run
together in one savepoint, the handler answering for each job (see :func:`simkeep.jobs.registry.job`). A
worker killed in the middle loses nothing: its claimed jobs are taken again when their lease runs out.
SIGTERM and SIGINT let the current batch finish first.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from simkeep.config import Settings
from simkeep.jobs import registry, service
from simkeep.logging import get_logger

log = get_logger("simkeep.jobs")


class UnknownJobKind(RuntimeError):
    """A job whose kind no module declares (an old job after an upgrade, or a typo)."""


@dataclass
class WorkerReport:
    """What a worker did in its life so far."""

    done: int = 0
    failed: int = 0
    dead: int = 0
    scheduled: list[str] = field(default_factory=list)


class Worker:
    """Carries out jobs until stopped (or, with ``exit_when_idle``, until none is due)."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        *,
        worker_id: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        registry.load_tasks()
        self.settings = settings
        self.factory = session_factory
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.batch_size = batch_size or settings.job_batch_size
        self.lease = timedelta(seconds=settings.job_lease_seconds)
        self.report = WorkerReport()
        self._stop = False
        self._next_schedule_check = 0.0

    def stop(self, *_args: object) -> None:
        """Finish the current batch, then return from :meth:`run`."""
        self._stop = True

    def install_signal_handlers(self) -> None:
        """Stop gracefully on SIGTERM and SIGINT."""

        def handler(_signum: int, _frame: FrameType | None) -> None:
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, *, exit_when_idle: bool = False) -> WorkerReport:
        """Loop: enqueue due schedules, run a batch, sleep a little when there was nothing to do."""
        log.info("worker.started", worker=self.worker_id, batch=self.batch_size)
        while not self._stop:
            self.enqueue_due_schedules()
            ran = self.run_batch()
            if ran == 0:
                if exit_when_idle:
                    break
                time.sleep(self.settings.job_poll_seconds)
        log.info("worker.stopped", worker=self.worker_id, done=self.report.done, dead=self.report.dead)
        return self.report

    def enqueue_due_schedules(self, *, force: bool = False) -> list[str]:
        """Enqueue the declared periodic jobs whose time has come (checked every few seconds).

        Returns the slots enqueued; a slot whose job exists already (its key is taken) is not enqueued again.
        """
        now = time.monotonic()
        if not force and now < self._next_schedule_check:
            return []
        self._next_schedule_check = now + self.settings.job_schedule_check_seconds
        schedules = {s.name: s.every for s in registry.SCHEDULES.values()}
        if not schedules:
            return []
        enqueued: list[str] = []
        with self.factory() as session, session.begin():
            for slot in service.due_schedules(session, schedules):
                name = slot.split("@", 1)[0]
                max_attempts = registry.KINDS[name].max_attempts
                if service.enqueue(session, kind=name, key=f"schedule:{slot}", max_attempts=max_attempts):
                    enqueued.append(slot)
        self.report.scheduled.extend(enqueued)
        return enqueued

    def run_batch(self) -> int:
        """Claim and run one batch; returns how many jobs it held."""
        with self.factory() as session, session.begin():
            claimed = service.claim(
                session, worker_id=self.worker_id, limit=self.batch_size, lease=self.lease
            )
        if not claimed:
            return 0
        with self.factory() as session:
            with session.begin():
                outcome = execute(session, self.settings, claimed, worker_id=self.worker_id)
            # The network changes these jobs scheduled (external HLR) run now, not after their head start.
            from simkeep.network.operations import run_after_commit

            run_after_commit(session, self.settings)
        self.report.done += len(outcome.done)
        self.report.failed += len(outcome.failed)
        self.report.dead += outcome.dead
        return len(claimed)


@dataclass
class Outcome:
    """What became of the jobs of one batch."""

    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dead: int = 0


def execute(
    session: Session, settings: Settings, claimed: list[service.Claimed], *, worker_id: str
) -> Outcome:
    """Run claimed jobs in ``session``'s transaction and record how each went (the caller commits).

    Each job runs in a savepoint of its own; the jobs of a kind with a batch handler run together in one.
    A job that raises, or whose kind is unknown, is recorded as a failed try (retried after its backoff,
    dead after its last try) and its database changes are rolled back; the others are marked done.
    """
    outcome = Outcome()
    by_kind: dict[str, list[service.Claimed]] = {}
    for job in claimed:
        by_kind.setdefault(job.kind, []).append(job)
    for name, jobs in by_kind.items():
        kind = registry.KINDS.get(name)
        if kind is not None and kind.batch is not None and len(jobs) > 1:
            errors = _run_many(session, settings, kind, kind.batch, jobs)
        else:
            errors = {}
            for job in jobs:
                error = _run_one(session, settings, kind, job)
                if error is not None:
                    errors[job.id] = error
        for job in jobs:
            if job.id in errors:
                _failed(session, job, kind, errors[job.id], worker_id=worker_id, outcome=outcome)
            else:
                outcome.done.append(job.id)
    service.mark_done(session, outcome.done, worker_id=worker_id)
    return outcome


def _context(session: Session, settings: Settings, job: service.Claimed) -> registry.JobContext:
    return registry.JobContext(session, settings, job.id, job.key, job.attempts)


def _run_one(
    session: Session, settings: Settings, kind: registry.JobKind | None, job: service.Claimed
) -> Exception | None:
    try:
        if kind is None:
            raise UnknownJobKind(f"no handler is declared for job kind {job.kind!r}")
        with session.begin_nested():
            kind.handler(_context(session, settings, job), job.payload)
    except Exception as exc:
        return exc
    return None


def _run_many(
    session: Session,
    settings: Settings,
    kind: registry.JobKind,
    handler: registry.BatchHandler,
    jobs: list[service.Claimed],
) -> dict[int, Exception]:
    items = [registry.BatchItem(_context(session, settings, job), job.payload) for job in jobs]
    try:
        with session.begin_nested():
            errors = handler(items)
    except Exception as exc:
        log.warning("job.batch_failed", kind=kind.name, jobs=len(jobs), error=type(exc).__name__)
        return {job.id: exc for job in jobs}
    return {job.id: errors[job.id] for job in jobs if job.id in errors}


def _failed(
    session: Session,
    job: service.Claimed,
    kind: registry.JobKind | None,
    exc: Exception,
    *,
    worker_id: str,
    outcome: Outcome,
) -> None:
    error = f"{type(exc).__name__}: {exc}"
    retry_in = registry.backoff(kind, job.attempts) if kind else timedelta(hours=1)
    dead = service.mark_failed(session, job, error=error, retry_in=retry_in, worker_id=worker_id)
    outcome.failed.append(job.id)
    outcome.dead += int(dead)
    log.warning(
        "job.dead" if dead else "job.failed",
        job=job.id,
        kind=job.kind,
        attempt=job.attempts,
        error=type(exc).__name__,
    )


def drain(session: Session, settings: Settings, *, worker_id: str = "inline", limit: int = 10_000) -> int:
    """Run every due job inside ``session``'s transaction, without committing; returns how many ran.

    For tests and one-off commands that work in a transaction of their own (a worker commits per batch).
    A failing job is recorded as failed, as the worker would.
    """
    registry.load_tasks()
    ran = 0
    while ran < limit:
        claimed = service.claim(session, worker_id=worker_id, limit=100, lease=timedelta(minutes=5))
        if not claimed:
            break
        execute(session, settings, claimed, worker_id=worker_id)
        ran += len(claimed)
    return ran
