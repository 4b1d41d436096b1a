"""The queue's operations on one session (rolled back after each test)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput
from simkeep.jobs import service
from simkeep.models import Job, JobState
from tests.helpers import count, snapshot

LEASE = timedelta(minutes=2)


class TestEnqueue:
    """``enqueue``: a job is written in the caller's transaction, once per key."""

    def test_enqueue_adds_a_queued_job(self, db: Session) -> None:
        """A new key adds one queued job, due now, with no try yet."""
        assert service.enqueue(db, kind="test.record", key="k-1", payload={"n": 1}) is True
        job = db.scalars(select(Job).where(Job.key == "k-1")).one()
        assert (job.kind, job.state, job.attempts, job.payload) == (
            "test.record",
            JobState.QUEUED,
            0,
            {"n": 1},
        )
        assert job.run_at <= utcnow()

    def test_second_enqueue_of_a_key_adds_nothing(self, db: Session) -> None:
        """The same key again returns False and leaves the first job as it was (its payload included)."""
        service.enqueue(db, kind="test.record", key="k-1", payload={"n": 1})
        before = snapshot(db)
        assert service.enqueue(db, kind="test.record", key="k-1", payload={"n": 2}) is False
        assert snapshot(db) == before
        assert count(db, "jobs") == 1

    def test_key_of_a_finished_job_is_not_enqueued_again(self, db: Session) -> None:
        """A key stays taken after its job is done: the work is not done twice."""
        service.enqueue(db, kind="test.record", key="k-1")
        [claimed] = service.claim(db, worker_id="w", limit=10, lease=LEASE)
        service.mark_done(db, [claimed.id], worker_id="w")
        assert service.enqueue(db, kind="test.record", key="k-1") is False
        assert count(db, "jobs") == 1

    @pytest.mark.parametrize("key", ["", "k" * 201])
    def test_bad_key_is_refused(self, db: Session, key: str) -> None:
        """An empty key or one over 200 characters is JOB_KEY_INVALID, and nothing is added."""
        with pytest.raises(InvalidInput) as refused:
            service.enqueue(db, kind="test.record", key=key)
        assert refused.value.code == "JOB_KEY_INVALID"
        assert count(db, "jobs") == 0


class TestClaim:
    """``claim``: due jobs, oldest first, each taken with a lease and a try counted."""

    def test_claim_takes_due_jobs_oldest_first_up_to_the_limit(self, db: Session) -> None:
        """Of three due jobs, a limit of two takes the two oldest, running, with one try each."""
        now = utcnow()
        for n, age in enumerate([1, 3, 2]):
            service.enqueue(db, kind="test.record", key=f"k-{n}", run_at=now - timedelta(minutes=age))
        claimed = service.claim(db, worker_id="w", limit=2, lease=LEASE)
        assert sorted(c.key for c in claimed) == ["k-1", "k-2"]
        assert {c.attempts for c in claimed} == {1}
        rows = db.scalars(select(Job).where(Job.key.in_(["k-1", "k-2"]))).all()
        assert {(j.state, j.locked_by) for j in rows} == {(JobState.RUNNING, "w")}
        assert all(j.lease_until is not None and j.lease_until > utcnow() for j in rows)

    def test_claim_skips_jobs_not_yet_due(self, db: Session) -> None:
        """A job whose run_at is in the future is not taken."""
        service.enqueue(db, kind="test.record", key="later", run_at=utcnow() + timedelta(minutes=5))
        assert service.claim(db, worker_id="w", limit=10, lease=LEASE) == []

    def test_claim_skips_jobs_held_under_a_lease(self, db: Session) -> None:
        """A job another worker holds, with its lease running, is not taken again."""
        service.enqueue(db, kind="test.record", key="k")
        service.claim(db, worker_id="a", limit=10, lease=LEASE)
        assert service.claim(db, worker_id="b", limit=10, lease=LEASE) == []


class TestRequeueLapsed:
    """``requeue_lapsed``: jobs whose worker stopped before finishing are queued again or dead-lettered."""

    def test_lapsed_job_is_queued_again_with_its_try_counted(self, db: Session) -> None:
        """A lapsed lease puts the job back in the queue, due now, keeping the try it lost."""
        service.enqueue(db, kind="test.record", key="k")
        [claimed] = service.claim(db, worker_id="a", limit=10, lease=timedelta(seconds=-1))
        assert service.requeue_lapsed(db) == 1
        job = db.get_one(Job, claimed.id, populate_existing=True)
        assert (job.state, job.attempts, job.locked_by) == (JobState.QUEUED, 1, None)
        assert job.last_error == service.LEASE_LAPSED

    def test_job_lapsed_on_its_last_try_is_dead(self, db: Session) -> None:
        """A job that was on its last try when its worker stopped is a dead letter, not retried for ever."""
        service.enqueue(db, kind="test.record", key="k", max_attempts=1)
        [claimed] = service.claim(db, worker_id="a", limit=10, lease=timedelta(seconds=-1))
        assert service.requeue_lapsed(db) == 1
        job = db.get_one(Job, claimed.id, populate_existing=True)
        assert (job.state, job.attempts, job.last_error) == (JobState.DEAD, 1, service.LEASE_LAPSED)
        assert job.finished_at is not None
        assert service.claim(db, worker_id="b", limit=10, lease=LEASE) == []

    def test_running_lease_is_left_alone(self, db: Session) -> None:
        """A job whose lease still runs stays with its worker."""
        service.enqueue(db, kind="test.record", key="k")
        service.claim(db, worker_id="a", limit=10, lease=LEASE)
        before = snapshot(db)
        assert service.requeue_lapsed(db) == 0
        assert snapshot(db) == before
