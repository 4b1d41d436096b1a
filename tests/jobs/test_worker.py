"""The worker on a private database with real commits: failures, batches, leases and several workers."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from simkeep.db.base import utcnow
from simkeep.jobs import service
from simkeep.jobs.worker import Worker
from simkeep.models import Job, JobState
from tests.jobs.conftest import (
    BATCH,
    BOOM,
    BOOM_ATTEMPTS,
    BOOM_BACKOFF_S,
    RECORD,
    STORE,
    Queue,
    between,
)


class TestFailedTries:
    """A job whose handler raises is tried again after a growing wait, and dead after its last try."""

    def test_failed_try_is_queued_again_after_its_backoff(self, queue: Queue) -> None:
        """After one failed try the job is queued, one try counted, due after the backoff, error kept."""
        job_id = queue.add(BOOM, "boom-1", max_attempts=BOOM_ATTEMPTS)
        before = utcnow()
        assert queue.worker().run_batch() == 1
        after = utcnow()
        job = queue.job(job_id)
        assert (job.state, job.attempts, job.last_error) == (JobState.QUEUED, 1, "Boom: boom")
        wait = timedelta(seconds=BOOM_BACKOFF_S)
        assert between(job.run_at, before + wait, after + wait)
        assert job.lease_until is None
        assert job.finished_at is None

    def test_job_is_not_tried_again_before_its_backoff(self, queue: Queue) -> None:
        """Right after a failed try the job is not due: the next batch takes nothing."""
        queue.add(BOOM, "boom-1", max_attempts=BOOM_ATTEMPTS)
        worker = queue.worker()
        worker.run_batch()
        assert worker.run_batch() == 0

    def test_backoff_doubles_with_each_try(self, queue: Queue) -> None:
        """The second failed try waits twice as long as the first."""
        job_id = queue.add(BOOM, "boom-1", max_attempts=BOOM_ATTEMPTS)
        worker = queue.worker()
        worker.run_batch()
        queue.make_due(job_id)
        before = utcnow()
        worker.run_batch()
        after = utcnow()
        job = queue.job(job_id)
        assert (job.state, job.attempts, job.last_error) == (JobState.QUEUED, 2, "Boom: boom")
        wait = timedelta(seconds=2 * BOOM_BACKOFF_S)
        assert between(job.run_at, before + wait, after + wait)

    def test_job_is_dead_after_its_last_try(self, queue: Queue) -> None:
        """After max_attempts failed tries the job is dead, with its last error, and no longer taken."""
        job_id = queue.add(BOOM, "boom-1", max_attempts=BOOM_ATTEMPTS)
        worker = queue.worker()
        for _ in range(BOOM_ATTEMPTS):
            queue.make_due(job_id)
            assert worker.run_batch() == 1
        job = queue.job(job_id)
        assert (job.state, job.attempts, job.last_error) == (JobState.DEAD, BOOM_ATTEMPTS, "Boom: boom")
        assert job.finished_at is not None
        assert (worker.report.failed, worker.report.dead, worker.report.done) == (BOOM_ATTEMPTS, 1, 0)
        queue.make_due(job_id)
        assert worker.run_batch() == 0
        assert queue.job(job_id).state == JobState.DEAD


class TestBatch:
    """A batch runs in one transaction with a savepoint per job."""

    def test_failing_handler_rolls_back_only_its_own_changes(self, queue: Queue) -> None:
        """Of three jobs in a batch, the one that fails after writing leaves nothing; the others commit."""
        ok_1 = queue.add(STORE, "store-a", {"code": "A"})
        failing = queue.add(STORE, "store-b", {"code": "B", "fail": True})
        ok_2 = queue.add(STORE, "store-c", {"code": "C"})
        assert queue.worker().run_batch() == 3
        assert queue.stores() >= {"A", "C"}
        assert "B" not in queue.stores()
        assert queue.job(ok_1).state == queue.job(ok_2).state == JobState.DONE
        job = queue.job(failing)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert job.last_error == "Boom: store B failed after writing"

    def test_database_error_in_a_handler_rolls_back_only_that_job(self, queue: Queue) -> None:
        """A handler that breaks a constraint (a store code taken in the same batch) fails alone."""
        first = queue.add(STORE, "store-a", {"code": "A"})
        duplicate = queue.add(STORE, "store-a-again", {"code": "A"})
        last = queue.add(STORE, "store-d", {"code": "D"})
        assert queue.worker().run_batch() == 3
        assert {"A", "D"} <= queue.stores()
        assert queue.job(first).state == queue.job(last).state == JobState.DONE
        job = queue.job(duplicate)
        assert job.state == JobState.QUEUED
        assert job.last_error is not None
        assert job.last_error.startswith("IntegrityError")

    def test_failing_batch_handler_fails_its_jobs_and_writes_nothing(self, queue: Queue) -> None:
        """A batch handler that raises rolls back what it wrote; each of its jobs has a failed try."""
        ids = [queue.add(BATCH, f"batch-{n}", {"code": f"X{n}"}) for n in range(3)]
        done = queue.add(STORE, "store-a", {"code": "A"})
        assert queue.worker().run_batch() == 4
        assert queue.stores() & {"X0", "X1", "X2"} == set()
        assert "A" in queue.stores()
        assert queue.job(done).state == JobState.DONE
        for job_id in ids:
            job = queue.job(job_id)
            assert (job.state, job.attempts, job.last_error) == (
                JobState.QUEUED,
                1,
                "Boom: the whole batch failed",
            )


class TestUnknownKind:
    """A job whose kind nobody declares (an old job after an upgrade, a typo)."""

    def test_unknown_kind_is_a_failed_try_not_a_crash(self, queue: Queue) -> None:
        """The batch goes on: the other job is done, the unknown one waits an hour for its next try."""
        unknown = queue.add("no.such.kind", "unknown-1", max_attempts=2)
        known = queue.add(STORE, "store-a", {"code": "A"})
        before = utcnow()
        assert queue.worker().run_batch() == 2
        after = utcnow()
        assert queue.job(known).state == JobState.DONE
        job = queue.job(unknown)
        assert (job.state, job.attempts) == (JobState.QUEUED, 1)
        assert job.last_error == "UnknownJobKind: no handler is declared for job kind 'no.such.kind'"
        assert between(job.run_at, before + timedelta(hours=1), after + timedelta(hours=1))

    def test_unknown_kind_is_dead_after_its_last_try(self, queue: Queue) -> None:
        """After max_attempts tries the unknown job is a dead letter an admin can look at."""
        unknown = queue.add("no.such.kind", "unknown-1", max_attempts=2)
        worker = queue.worker()
        for _ in range(2):
            queue.make_due(unknown)
            worker.run_batch()
        assert queue.job(unknown).state == JobState.DEAD

    def test_worker_run_returns_with_an_unknown_job_in_the_queue(self, queue: Queue) -> None:
        """``run(exit_when_idle=True)`` comes back normally, having recorded the failed try."""
        unknown = queue.add("no.such.kind", "unknown-1")
        report = queue.worker().run(exit_when_idle=True)
        assert report.failed == 1
        assert queue.job(unknown).state == JobState.QUEUED


class TestLeases:
    """A claim is a lease: a worker that died gives its jobs back when the lease runs out."""

    def test_lapsed_lease_lets_another_worker_take_the_job(self, queue: Queue) -> None:
        """Worker A claims and dies; once the lease lapsed, worker B runs the job, and the try counts."""
        job_id = queue.add(RECORD, "record-1")
        with queue.sessions() as session:
            service.claim(session, worker_id="worker-a", limit=10, lease=timedelta(minutes=2))
            session.commit()
        queue.lapse(job_id)
        b = queue.worker("worker-b")
        assert b.run_batch() == 1
        job = queue.job(job_id)
        assert (job.state, job.attempts, job.locked_by) == (JobState.DONE, 2, "worker-b")
        assert [job_id for _, job_id in queue.runs.ran] == [job_id]

    def test_job_under_a_running_lease_is_not_taken(self, queue: Queue) -> None:
        """While worker A's lease runs, worker B finds nothing to do and A still holds the job."""
        job_id = queue.add(RECORD, "record-1")
        with queue.sessions() as session:
            service.claim(session, worker_id="worker-a", limit=10, lease=timedelta(minutes=2))
            session.commit()
        assert queue.worker("worker-b").run_batch() == 0
        job = queue.job(job_id)
        assert (job.state, job.locked_by) == (JobState.RUNNING, "worker-a")
        assert queue.runs.ran == []

    def test_worker_that_lost_its_lease_cannot_record_the_outcome(self, queue: Queue) -> None:
        """Worker A, back after B took over its job, can neither finish nor fail it."""
        job_id = queue.add(RECORD, "record-1")
        with queue.sessions() as session:
            [held] = service.claim(session, worker_id="worker-a", limit=10, lease=timedelta(minutes=2))
            session.commit()
        queue.lapse(job_id)
        with queue.sessions() as session:
            service.claim(session, worker_id="worker-b", limit=10, lease=timedelta(minutes=2))
            session.commit()
        with queue.sessions() as session:
            service.mark_done(session, [job_id], worker_id="worker-a")
            service.mark_failed(
                session, held, error="late", retry_in=timedelta(seconds=1), worker_id="worker-a"
            )
            session.commit()
        job = queue.job(job_id)
        assert (job.state, job.locked_by, job.last_error) == (
            JobState.RUNNING,
            "worker-b",
            service.LEASE_LAPSED,
        )

    def test_job_lost_on_its_last_try_is_dead_not_run_again(self, queue: Queue) -> None:
        """A job whose worker dies on its last try (a job that kills workers) ends dead, never run again."""
        job_id = queue.add(RECORD, "record-1", max_attempts=1)
        with queue.sessions() as session:
            service.claim(session, worker_id="worker-a", limit=10, lease=timedelta(minutes=2))
            session.commit()
        queue.lapse(job_id)
        assert queue.worker("worker-b").run_batch() == 0
        job = queue.job(job_id)
        assert (job.state, job.attempts, job.last_error) == (JobState.DEAD, 1, service.LEASE_LAPSED)
        assert queue.runs.ran == []


def _drain_together(workers: list[Worker]) -> None:
    """Run the workers on threads named after them, started together, each until it finds nothing."""
    start = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def work(worker: Worker) -> None:
        try:
            start.wait()
            while worker.run_batch():
                pass
        except BaseException as exc:
            errors.append(exc)
            raise

    threads = [threading.Thread(target=work, args=(w,), name=w.worker_id) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


class TestTwoWorkers:
    """Two workers on the same queue at the same time."""

    JOBS = 200

    def test_two_workers_run_each_job_exactly_once(self, queue: Queue) -> None:
        """Every job is run by one worker, once, and is done; none is run twice."""
        ids = [queue.add(RECORD, f"record-{n}", {"sleep": 0.002}) for n in range(self.JOBS)]
        _drain_together([queue.worker("worker-a", batch=10), queue.worker("worker-b", batch=10)])
        ran = Counter(job_id for _, job_id in queue.runs.ran)
        assert set(ran) == set(ids)
        assert set(ran.values()) == {1}
        with queue.sessions() as session:
            states = Counter(session.scalars(select(Job.state).where(Job.id.in_(ids))))
        assert states == Counter({JobState.DONE: self.JOBS})

    def test_two_workers_share_the_queue_on_postgres(self, queue: Queue, backend: str) -> None:
        """With SKIP LOCKED both workers take jobs at the same time: disjoint sets, each run by its taker."""
        if backend != "postgres":
            pytest.skip("SQLite serialises writers; one worker serves it")
        ids = [queue.add(RECORD, f"record-{n}", {"sleep": 0.005}) for n in range(self.JOBS)]
        _drain_together([queue.worker("worker-a", batch=10), queue.worker("worker-b", batch=10)])
        by_worker: dict[str, set[int]] = {"worker-a": set(), "worker-b": set()}
        for name, job_id in queue.runs.ran:
            by_worker[name].add(job_id)
        assert by_worker["worker-a"] and by_worker["worker-b"]
        assert by_worker["worker-a"].isdisjoint(by_worker["worker-b"])
        assert by_worker["worker-a"] | by_worker["worker-b"] == set(ids)
        with queue.sessions() as session:
            rows = session.execute(select(Job.id, Job.locked_by).where(Job.id.in_(ids))).all()
        assert {job_id for job_id, name in rows if name == "worker-a"} == by_worker["worker-a"]
