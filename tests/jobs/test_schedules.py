"""Periodic jobs: each time slot of a schedule is enqueued once, however many workers look at it."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from simkeep.db.base import utcnow
from simkeep.jobs import registry
from simkeep.jobs.worker import Worker
from simkeep.models import Job, JobSchedule
from tests.jobs.conftest import Queue

DECLARED = {"orders.expire", "evidence.purge", "shipping.demo_advance", "keepalive.sweep"}


def _check_together(workers: list[Worker]) -> list[list[str]]:
    """Both workers look for due schedules at the same moment; returns the slots each enqueued."""
    start = threading.Barrier(len(workers))
    found: list[list[str]] = [[] for _ in workers]
    errors: list[BaseException] = []

    def check(n: int) -> None:
        try:
            start.wait()
            found[n] = workers[n].enqueue_due_schedules(force=True)
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=check, args=(n,)) for n in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return found


def _scheduled(queue: Queue) -> Counter[str]:
    """How many jobs of each declared schedule are queued (in any state)."""
    with queue.sessions() as session:
        return Counter(session.scalars(select(Job.kind).where(Job.kind.in_(DECLARED))))


class TestSchedules:
    """``Worker.enqueue_due_schedules``."""

    def test_declared_schedules(self) -> None:
        """The worker knows the periodic jobs of the service."""
        registry.load_tasks()
        assert set(registry.SCHEDULES) >= DECLARED

    def test_two_workers_enqueue_each_slot_once(self, queue: Queue) -> None:
        """Two workers checking at the same moment enqueue one job per schedule between them."""
        found = _check_together([queue.worker("worker-a"), queue.worker("worker-b")])
        assert _scheduled(queue) == Counter(dict.fromkeys(DECLARED, 1))
        assert sorted(slot.split("@")[0] for slots in found for slot in slots) == sorted(DECLARED)

    def test_checking_again_in_the_same_slot_enqueues_nothing(self, queue: Queue) -> None:
        """A second round of checks by both workers, before the next slot, adds no job."""
        workers = [queue.worker("worker-a"), queue.worker("worker-b")]
        _check_together(workers)
        assert _check_together(workers) == [[], []]
        assert _scheduled(queue) == Counter(dict.fromkeys(DECLARED, 1))

    def test_next_slot_is_enqueued_once_more(self, queue: Queue) -> None:
        """When the next slot has come, the two workers together enqueue one more job per schedule."""
        workers = [queue.worker("worker-a"), queue.worker("worker-b")]
        _check_together(workers)
        with queue.sessions() as session:
            session.execute(update(JobSchedule).values(next_run_at=utcnow() - timedelta(seconds=5)))
            session.commit()
        _check_together(workers)
        assert _scheduled(queue) == Counter(dict.fromkeys(DECLARED, 2))

    def test_slot_taken_twice_enqueues_once(self, queue: Queue) -> None:
        """A slot seen again (its schedule row put back) finds its job by key and adds none."""
        worker = queue.worker()
        with queue.sessions() as session:
            before = utcnow() - timedelta(minutes=1)
            for name in sorted(DECLARED):
                session.add(JobSchedule(name=name, next_run_at=before))
            session.commit()
        assert len(worker.enqueue_due_schedules(force=True)) == len(DECLARED)
        with queue.sessions() as session:
            session.execute(update(JobSchedule).values(next_run_at=before))
            session.commit()
        assert worker.enqueue_due_schedules(force=True) == []
        assert _scheduled(queue) == Counter(dict.fromkeys(DECLARED, 1))

    def test_schedule_is_advanced_by_its_period(self, queue: Queue) -> None:
        """After a slot is taken, the schedule's next time is one period ahead."""
        before = utcnow()
        queue.worker().enqueue_due_schedules(force=True)
        after = utcnow()
        with queue.sessions() as session:
            rows = {row.name: row for row in session.scalars(select(JobSchedule))}
        for name in DECLARED:
            every = registry.SCHEDULES[name].every
            assert before + every <= rows[name].next_run_at <= after + every
