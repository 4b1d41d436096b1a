"""``simkeep jobs list``, ``simkeep jobs retry`` and ``simkeep worker`` on a private, committed database."""

from __future__ import annotations

import json

from sqlalchemy import select

from simkeep.db.base import utcnow
from simkeep.models import AuditEntry, Job, JobState, Notification
from tests.jobs.conftest import BOOM, Cli, Queue, cli_environment, simkeep
from tests.jobs.test_delivery import queue_notifications


def _audit(queue: Queue) -> list[AuditEntry]:
    with queue.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "jobs.retried")))


class TestJobsList:
    """``simkeep jobs list [--state S] [--json]``."""

    def test_dead_job_is_listed_with_its_error(self, cli: Cli, queue: Queue) -> None:
        """``--state dead`` shows the dead job, its tries and last error, and the count in each state."""
        dead = queue.dead("boom-1")
        queue.done("record-1")
        listed = cli.json("jobs", "list", "--state", "dead")
        assert listed["counts"] == {"queued": 0, "running": 0, "done": 1, "dead": 1}
        [job] = listed["jobs"]
        assert {
            k: job[k] for k in ("id", "kind", "key", "state", "attempts", "max_attempts", "last_error")
        } == {
            "id": dead,
            "kind": BOOM,
            "key": "boom-1",
            "state": "dead",
            "attempts": 1,
            "max_attempts": 1,
            "last_error": "Boom: boom",
        }

    def test_list_shows_every_job_newest_first(self, cli: Cli, queue: Queue) -> None:
        """Without ``--state`` every job is listed, the newest first."""
        first = queue.dead("boom-1")
        second = queue.done("record-1")
        third = queue.add(BOOM, "boom-2")
        listed = cli.json("jobs", "list")
        assert [(j["id"], j["state"]) for j in listed["jobs"]] == [
            (third, "queued"),
            (second, "done"),
            (first, "dead"),
        ]

    def test_text_output_names_the_counts_and_errors(self, cli: Cli, queue: Queue) -> None:
        """For a person: the counts first, then one line per job with its error."""
        queue.dead("boom-1")
        result = cli.run("jobs", "list", "--state", "dead")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == "queued 0, running 0, done 0, dead 1"
        assert "test.boom" in lines[1]
        assert "Boom: boom" in lines[1]

    def test_unknown_state_is_refused(self, cli: Cli, queue: Queue) -> None:
        """A state that does not exist is a usage error (exit 2)."""
        result = cli.run("jobs", "list", "--state", "lost")
        assert result.exit_code == 2


class TestJobsRetry:
    """``simkeep jobs retry IDS | --all-dead [--json]``."""

    def test_retry_queues_a_dead_job_again(self, cli: Cli, queue: Queue) -> None:
        """The dead job is queued, due now, with fresh tries, and the retry is audited."""
        dead = queue.dead("boom-1")
        before = utcnow()
        assert cli.json("jobs", "retry", str(dead)) == {"retried": [dead]}
        job = queue.job(dead)
        assert (job.state, job.attempts, job.finished_at, job.lease_until) == (JobState.QUEUED, 0, None, None)
        assert job.run_at >= before
        [entry] = _audit(queue)
        assert (entry.actor, entry.subject_type, entry.subject_id) == ("cli", "system", "jobs")
        assert entry.data == {"ids": [dead], "count": 1}

    def test_retried_job_is_run_again(self, cli: Cli, queue: Queue) -> None:
        """The next batch takes the retried job (here it fails again: one new try is counted)."""
        dead = queue.dead("boom-1")
        cli.json("jobs", "retry", str(dead))
        assert queue.worker().run_batch() == 1
        assert queue.job(dead).state == JobState.DEAD  # max_attempts is 1: its one new try failed too

    def test_all_dead_retries_every_dead_job(self, cli: Cli, queue: Queue) -> None:
        """``--all-dead`` queues every dead job again and leaves the others alone."""
        dead = [queue.dead("boom-1"), queue.dead("boom-2")]
        done = queue.done("record-1")
        assert cli.json("jobs", "retry", "--all-dead") == {"retried": dead}
        assert {queue.job(j).state for j in dead} == {JobState.QUEUED}
        assert queue.job(done).state == JobState.DONE

    def test_unknown_id_is_refused_and_changes_nothing(self, cli: Cli, queue: Queue) -> None:
        """An id no job has: JOB_NOT_FOUND, exit 1, no job changed and nothing audited."""
        dead = queue.dead("boom-1")
        before = queue.state()
        refused = cli.json("jobs", "retry", str(dead), str(dead + 1000), exit_code=1)
        assert refused["error"] == "JOB_NOT_FOUND"
        assert str(dead + 1000) in refused["message"]
        assert queue.state() == before

    def test_job_that_is_not_dead_is_refused_and_changes_nothing(self, cli: Cli, queue: Queue) -> None:
        """A done job cannot be retried: JOB_NOT_DEAD, and the dead job named with it stays dead."""
        dead = queue.dead("boom-1")
        done = queue.done("record-1")
        before = queue.state()
        refused = cli.json("jobs", "retry", str(dead), str(done), exit_code=1)
        assert refused["error"] == "JOB_NOT_DEAD"
        assert str(done) in refused["message"]
        assert queue.state() == before

    def test_refusal_in_text_names_the_code(self, cli: Cli, queue: Queue) -> None:
        """Without --json the refusal is printed with its code on stderr."""
        result = cli.run("jobs", "retry", "424242")
        assert result.exit_code == 1
        assert "error [JOB_NOT_FOUND]" in result.stderr

    def test_ids_or_all_dead_are_needed(self, cli: Cli, queue: Queue) -> None:
        """Neither ids nor ``--all-dead`` (or both) is a usage error, exit 2, nothing changed."""
        dead = queue.dead("boom-1")
        before = queue.state()
        assert cli.json("jobs", "retry", exit_code=2)["error"] == "USAGE"
        assert cli.json("jobs", "retry", str(dead), "--all-dead", exit_code=2)["error"] == "USAGE"
        assert queue.state() == before


class TestWorkerCommand:
    """``simkeep worker --exit-when-idle``."""

    def test_exit_when_idle_drains_the_queue_and_exits_0(self, queue: Queue) -> None:
        """Twenty queued notifications are sent, every job is done, and it exits 0 with its report."""
        ids = queue_notifications(queue, 20)
        result = simkeep("worker", "--exit-when-idle", "--json", env=cli_environment(queue.settings))
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        with queue.sessions() as session:
            follow_ups = len(session.scalars(select(Job.id).where(Job.kind == "keepalive.sweep.more")).all())
        assert report["done"] == 20 + len(report["scheduled"]) + follow_ups  # a sweep continues in batches
        assert (report["failed"], report["dead"]) == (0, 0)
        with queue.sessions() as session:
            assert set(session.scalars(select(Job.state))) == {JobState.DONE}
            statuses = set(session.scalars(select(Notification.status).where(Notification.id.in_(ids))))
        assert statuses == {"sent"}
