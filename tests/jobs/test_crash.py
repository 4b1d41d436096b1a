"""The crash test of the job queue: a worker killed with SIGKILL in the middle of a backlog loses nothing and
sends nothing twice once a worker runs again.

The worker runs as the operator runs it (``simkeep worker`` in a child process) against a private, committed
database (a SQLite file or a PostgreSQL schema), with the file transport writing one JSON file per message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.pool import NullPool

from simkeep.db.base import utcnow
from simkeep.db.engine import normalise_url
from simkeep.models import Job, JobState, Notification
from simkeep.notifications.tasks import DELIVER
from simkeep.notifications.transports import read_outbox
from tests.jobs.conftest import Queue, cli_environment, simkeep, simkeep_command
from tests.jobs.test_delivery import queue_notifications

NOTIFICATIONS = 300
LEASE_SECONDS = 2
#: Give up waiting for the first worker after this long (a guard against a hung test, not a measurement).
PATIENCE_S = 120.0


def _deliveries(reader: Engine) -> Counter[JobState]:
    """How many delivery jobs are in each state, as committed."""
    with reader.connect() as conn:
        rows = conn.execute(select(Job.state, func.count()).where(Job.kind == DELIVER).group_by(Job.state))
        return Counter({JobState(state): int(n) for state, n in rows})


def _kill_midway(queue: Queue, env: dict[str, str], log: Path) -> None:
    """Start ``simkeep worker``; SIGKILL it once a fifth of the deliveries are done, while it holds a batch.

    The progress is read through a plain engine (no ``BEGIN IMMEDIATE``), so that on SQLite the reads do not
    wait for the worker's write lock and the kill lands while the worker is busy.
    """
    reader = create_engine(normalise_url(queue.settings.database_url), poolclass=NullPool)
    with log.open("w") as out:
        child = subprocess.Popen(  # noqa: S603 - the installed simkeep command
            [simkeep_command(), "worker"], env={**os.environ, **env}, stdout=out, stderr=out
        )
    try:
        give_up = time.monotonic() + PATIENCE_S
        while True:
            seen = _deliveries(reader)
            if seen[JobState.DONE] >= NOTIFICATIONS // 2 or (
                seen[JobState.DONE] >= NOTIFICATIONS // 5 and seen[JobState.RUNNING]
            ):
                break
            if child.poll() is not None:
                pytest.fail(f"the worker exited early ({child.returncode}): {log.read_text()[-2000:]}")
            if time.monotonic() > give_up:
                pytest.fail("the worker made no progress")
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        reader.dispose()
    assert child.returncode == -signal.SIGKILL


def _files(outbox: Path) -> dict[Path, tuple[int, int]]:
    """The messages in the outbox, each with its inode and modification time (a rewrite changes them)."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in outbox.glob("*.json")}


def _wait_for_leases_to_lapse(queue: Queue) -> None:
    """Sleep until the leases of the jobs the killed worker held have run out."""
    with queue.sessions() as session:
        latest = session.scalar(select(func.max(Job.lease_until)).where(Job.state == JobState.RUNNING))
    if latest is not None:
        time.sleep(max(0.0, (latest - utcnow()).total_seconds()) + 0.1)


class TestWorkerCrash:
    """``simkeep worker`` killed with SIGKILL in the middle of 300 notifications, then run again."""

    def test_killed_worker_loses_nothing_and_sends_nothing_twice(self, queue: Queue, tmp_path: Path) -> None:
        """After the restart every job is done, every notification sent, with exactly one message each."""
        ids = queue_notifications(queue, NOTIFICATIONS)
        outbox = Path(queue.settings.otp_outbox_dir)
        env = {
            **cli_environment(queue.settings),
            "SIMKEEP_OTP_TRANSPORT": "file",
            "SIMKEEP_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "SIMKEEP_JOB_BATCH_SIZE": "10",
            "SIMKEEP_JOB_POLL_SECONDS": "0.05",
        }

        _kill_midway(queue, env, tmp_path / "first-worker.log")
        with queue.sessions() as session:
            at_kill = Counter(session.scalars(select(Job.state).where(Job.kind == DELIVER)))
            held = list(
                session.scalars(select(Job.id).where(Job.state == JobState.RUNNING, Job.kind == DELIVER))
            )
        assert 0 < at_kill[JobState.DONE] < NOTIFICATIONS  # killed in the middle, as this test means to
        written = _files(outbox)

        _wait_for_leases_to_lapse(queue)
        result = simkeep("worker", "--exit-when-idle", "--json", env=env)
        assert result.returncode == 0, result.stderr

        with queue.sessions() as session:
            assert set(session.scalars(select(Job.state))) == {JobState.DONE}
            statuses = Counter(session.scalars(select(Notification.status).where(Notification.id.in_(ids))))
            retaken = Counter(session.scalars(select(Job.attempts).where(Job.id.in_(held))))
        assert statuses == Counter({"sent": NOTIFICATIONS})
        assert retaken == Counter(
            {2: len(held)}
        )  # the jobs the killed worker held were run again; the lost try counts
        keys = Counter(message.key for message in read_outbox(outbox))
        assert keys == Counter({f"notification:{i}": 1 for i in ids})
        assert len(list(outbox.glob("*.json"))) == NOTIFICATIONS
        after = _files(outbox)
        assert {path: after[path] for path in written} == written  # what went out before the kill, not again
