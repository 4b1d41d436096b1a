"""The job queue for admins over HTTP: ``GET /api/v1/jobs`` and ``POST /api/v1/jobs:retry``."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.jobs.service import enqueue
from simkeep.jobs.worker import drain
from simkeep.models import AuditEntry, Job, JobState, StaffRole
from tests import factories
from tests.helpers import line_headers, snapshot, staff_headers
from tests.jobs.conftest import BOOM, RECORD, Runs

#: Who is refused, and how: staff of other roles for their role, a signed-in holder for not being staff.
REFUSED = [
    ("clerk", 403, "ROLE_NOT_ALLOWED"),
    ("reviewer", 403, "ROLE_NOT_ALLOWED"),
    ("holder", 401, "STAFF_SIGN_IN_REQUIRED"),
]


@dataclass
class Desk:
    """A dead job, a done job, and people signed in with each role."""

    client: TestClient
    db: Session
    dead: int
    done: int
    admin_name: str
    admin: dict[str, str]
    reviewer: dict[str, str]
    clerk: dict[str, str]
    holder: dict[str, str]

    def job(self, job_id: int) -> Job:
        """The job as it is now."""
        return self.db.get_one(Job, job_id, populate_existing=True)

    def state(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row that a request could change, the audit log included."""
        return snapshot(self.db, exclude=("auth_tokens",))


def _job_id(db: Session, key: str) -> int:
    return int(db.scalars(select(Job.id).where(Job.key == key)).one())


@pytest.fixture
def desk(client: TestClient, db: Session, settings: Settings, runs: Runs) -> Desk:
    """A job that died on its only try and one that is done, and the people of these tests."""
    enqueue(db, kind=BOOM, key="boom-1", max_attempts=1)
    enqueue(db, kind=RECORD, key="record-1")
    drain(db, settings)
    admin = factories.staff(db, StaffRole.ADMIN)
    reviewer = factories.staff(db, StaffRole.REVIEWER)
    clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
    holder = factories.holder(db, settings)
    return Desk(
        client=client,
        db=db,
        dead=_job_id(db, "boom-1"),
        done=_job_id(db, "record-1"),
        admin_name=admin.username,
        admin=staff_headers(client, admin.username),
        reviewer=staff_headers(client, reviewer.username),
        clerk=staff_headers(client, clerk.username),
        holder=line_headers(client, holder.msisdn),
    )


class TestListJobs:
    """``GET /api/v1/jobs[?state=S&limit=N]``."""

    def test_admin_sees_the_dead_job(self, desk: Desk) -> None:
        """``state=dead`` lists the dead job with its tries and last error, and the count in each state."""
        r = desk.client.get("/api/v1/jobs", params={"state": "dead"}, headers=desk.admin)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["counts"] == {"queued": 0, "running": 0, "done": 1, "dead": 1}
        [job] = body["jobs"]
        assert (job["id"], job["kind"], job["state"], job["attempts"], job["max_attempts"]) == (
            desk.dead,
            BOOM,
            "dead",
            1,
            1,
        )
        assert job["last_error"] == "Boom: boom"
        assert job["finished_at"] is not None

    def test_without_state_every_job_is_listed_newest_first(self, desk: Desk) -> None:
        """All jobs, the newest first; ``limit`` keeps the newest ones."""
        r = desk.client.get("/api/v1/jobs", headers=desk.admin)
        assert [j["id"] for j in r.json()["jobs"]] == sorted([desk.dead, desk.done], reverse=True)
        r = desk.client.get("/api/v1/jobs", params={"limit": 1}, headers=desk.admin)
        assert [j["id"] for j in r.json()["jobs"]] == [max(desk.dead, desk.done)]

    @pytest.mark.parametrize(("who", "status", "code"), REFUSED)
    def test_only_admins_may_look(self, desk: Desk, who: str, status: int, code: str) -> None:
        """Clerks and reviewers are refused for their role, holders for not being staff; no job is shown."""
        r = desk.client.get("/api/v1/jobs", params={"state": "dead"}, headers=getattr(desk, who))
        assert r.status_code == status
        assert r.json()["code"] == code
        assert "jobs" not in r.json()

    def test_anonymous_caller_is_refused(self, desk: Desk) -> None:
        """Without a token: 401 STAFF_SIGN_IN_REQUIRED."""
        r = desk.client.get("/api/v1/jobs", params={"state": "dead"})
        assert r.status_code == 401
        assert r.json()["code"] == "STAFF_SIGN_IN_REQUIRED"

    def test_unknown_state_is_refused(self, desk: Desk) -> None:
        """A state that does not exist is VALIDATION_FAILED."""
        r = desk.client.get("/api/v1/jobs", params={"state": "lost"}, headers=desk.admin)
        assert r.status_code == 422
        assert r.json()["code"] == "VALIDATION_FAILED"


class TestRetryJobs:
    """``POST /api/v1/jobs:retry`` with ``{"ids": [...]}``."""

    def test_admin_queues_a_dead_job_again(self, desk: Desk) -> None:
        """The dead job is queued with fresh tries, the response shows it so, and the retry is audited."""
        r = desk.client.post("/api/v1/jobs:retry", json={"ids": [desk.dead]}, headers=desk.admin)
        assert r.status_code == 200, r.text
        [shown] = r.json()
        assert (shown["id"], shown["state"], shown["attempts"], shown["finished_at"]) == (
            desk.dead,
            "queued",
            0,
            None,
        )
        job = desk.job(desk.dead)
        assert (job.state, job.attempts, job.finished_at) == (JobState.QUEUED, 0, None)
        [entry] = desk.db.scalars(select(AuditEntry).where(AuditEntry.action == "jobs.retried")).all()
        assert entry.actor == f"staff:{desk.admin_name}"
        assert entry.data == {"ids": [desk.dead]}

    def test_unknown_id_is_refused_and_changes_nothing(self, desk: Desk) -> None:
        """A list naming an unknown id is refused whole: 404 JOB_NOT_FOUND, the dead job stays dead."""
        before = desk.state()
        r = desk.client.post("/api/v1/jobs:retry", json={"ids": [desk.dead, 987654]}, headers=desk.admin)
        assert r.status_code == 404
        assert r.json()["code"] == "JOB_NOT_FOUND"
        assert "987654" in r.json()["detail"]
        assert desk.state() == before

    def test_job_that_is_not_dead_is_refused_and_changes_nothing(self, desk: Desk) -> None:
        """A list naming a done job is refused whole: 422 JOB_NOT_DEAD, nothing queued, nothing audited."""
        before = desk.state()
        r = desk.client.post("/api/v1/jobs:retry", json={"ids": [desk.dead, desk.done]}, headers=desk.admin)
        assert r.status_code == 422
        assert r.json()["code"] == "JOB_NOT_DEAD"
        assert desk.state() == before

    def test_empty_list_is_refused(self, desk: Desk) -> None:
        """No ids at all is VALIDATION_FAILED."""
        before = desk.state()
        r = desk.client.post("/api/v1/jobs:retry", json={"ids": []}, headers=desk.admin)
        assert r.status_code == 422
        assert r.json()["code"] == "VALIDATION_FAILED"
        assert desk.state() == before

    @pytest.mark.parametrize(("who", "status", "code"), REFUSED)
    def test_only_admins_may_retry(self, desk: Desk, who: str, status: int, code: str) -> None:
        """Clerks, reviewers and holders are refused, and the dead job stays dead."""
        before = desk.state()
        r = desk.client.post("/api/v1/jobs:retry", json={"ids": [desk.dead]}, headers=getattr(desk, who))
        assert r.status_code == status
        assert r.json()["code"] == code
        assert desk.state() == before

    def test_anonymous_caller_may_not_retry(self, desk: Desk) -> None:
        """Without a token: 401, and nothing changes."""
        before = desk.state()
        r = desk.client.post("/api/v1/jobs:retry", json={"ids": [desk.dead]})
        assert r.status_code == 401
        assert desk.state() == before
