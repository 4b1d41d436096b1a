"""Fixtures for the job queue: job kinds made for the tests, workers and the CLI on a private database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.db.base import utcnow
from simkeep.db.engine import make_session_factory
from simkeep.jobs import registry
from simkeep.jobs.registry import BatchItem, JobContext, JobKind
from simkeep.jobs.service import enqueue
from simkeep.jobs.worker import Worker
from simkeep.logging import configure_logging
from simkeep.models import Job, Store
from tests.helpers import snapshot

#: Kinds declared by these tests only (the registry is restored after each test).
STORE = "test.store"  # adds a store; fails after writing it when the payload says so
BOOM = "test.boom"  # always raises
RECORD = "test.record"  # records which worker ran it
BATCH = "test.batch"  # a batch handler that writes, then raises
BOOM_BACKOFF_S = 10.0
BOOM_ATTEMPTS = 3


class Boom(RuntimeError):
    """The failure of a test job."""


@dataclass
class Runs:
    """Which thread ran each ``test.record`` job, in the order they ran."""

    ran: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, job_id: int) -> None:
        """Record that the current thread ran ``job_id``."""
        with self.lock:
            self.ran.append((threading.current_thread().name, job_id))


def _store(ctx: JobContext, payload: dict[str, Any]) -> None:
    ctx.session.add(Store(code=str(payload["code"]), name="made by a job", region="Beijing"))
    ctx.session.flush()
    if payload.get("fail"):
        raise Boom(f"store {payload['code']} failed after writing")


def _boom(_ctx: JobContext, _payload: dict[str, Any]) -> None:
    raise Boom("boom")


def _batch(items: list[BatchItem]) -> dict[int, Exception]:
    session = items[0].context.session
    for item in items:
        session.add(Store(code=str(item.payload["code"]), name="made by a batch", region="Beijing"))
    session.flush()
    raise Boom("the whole batch failed")


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Runs:
    """Declare the test kinds for this test; returns the record of ``test.record`` runs."""
    registry.load_tasks()
    record = Runs()

    def _record(ctx: JobContext, payload: dict[str, Any]) -> None:
        record.add(ctx.job_id)
        time.sleep(float(payload.get("sleep", 0)))  # holds the batch open, so that workers overlap

    for kind in (
        JobKind(STORE, _store, 8, 15.0),
        JobKind(BOOM, _boom, BOOM_ATTEMPTS, BOOM_BACKOFF_S),
        JobKind(RECORD, _record, 8, 15.0),
        JobKind(BATCH, _store, 8, 15.0, _batch),
    ):
        monkeypatch.setitem(registry.KINDS, kind.name, kind)
    return record


@dataclass
class Queue:
    """A private, committed database with the test kinds declared, and workers on it."""

    engine: Engine
    settings: Settings
    sessions: Callable[[], Session]
    runs: Runs

    def add(self, kind: str, key: str, payload: dict[str, Any] | None = None, **options: Any) -> int:
        """Enqueue and commit one job; returns its id."""
        with self.sessions() as session:
            assert enqueue(session, kind=kind, key=key, payload=payload, **options)
            session.commit()
            return int(session.scalars(select(Job.id).where(Job.key == key)).one())

    def dead(self, key: str) -> int:
        """A dead job: one that failed its only try; returns its id."""
        job_id = self.add(BOOM, key, max_attempts=1)
        self.make_due(job_id)
        assert self.worker("killer").run_batch() >= 1
        return job_id

    def done(self, key: str) -> int:
        """A job that ran and is done; returns its id."""
        job_id = self.add(RECORD, key)
        assert self.worker("runner").run_batch() >= 1
        return job_id

    def worker(self, name: str = "worker-a", *, settings: Settings | None = None, batch: int = 50) -> Worker:
        """A worker on this database."""
        return Worker(
            settings or self.settings, make_session_factory(self.engine), worker_id=name, batch_size=batch
        )

    def job(self, job_id: int) -> Job:
        """A job as committed now."""
        with self.sessions() as session:
            return session.get_one(Job, job_id)

    def make_due(self, *job_ids: int) -> None:
        """Bring the next try of queued jobs to now (as if their backoff had passed)."""
        with self.sessions() as session:
            session.execute(update(Job).where(Job.id.in_(job_ids)).values(run_at=utcnow()))
            session.commit()

    def lapse(self, *job_ids: int) -> None:
        """Let the leases of running jobs run out (as if their worker had died a while ago)."""
        with self.sessions() as session:
            past = utcnow() - timedelta(minutes=1)
            session.execute(update(Job).where(Job.id.in_(job_ids)).values(lease_until=past))
            session.commit()

    def stores(self) -> set[str]:
        """The codes of the stores that exist."""
        with self.sessions() as session:
            return set(session.scalars(select(Store.code)))

    def state(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every table, the audit log included."""
        with self.sessions() as session:
            return snapshot(session, exclude=())


@pytest.fixture
def queue(fresh: tuple[Engine, Settings], runs: Runs) -> Queue:
    """The job queue on a private database with real commits."""
    engine, settings = fresh
    return Queue(engine, settings, make_session_factory(engine), runs)


def between(moment: datetime, earliest: datetime, latest: datetime) -> bool:
    """Whether ``moment`` lies in ``[earliest, latest]`` (the stored precision is a microsecond)."""
    return earliest - timedelta(microseconds=1) <= moment <= latest + timedelta(microseconds=1)


@dataclass
class Cli:
    """The ``simkeep`` command, configured through the environment to use the private database."""

    runner: CliRunner
    settings: Settings

    def run(self, *args: str) -> Result:
        """Run ``simkeep ARGS``; logging then writes to the real stderr again, not the runner's closed one."""
        try:
            return self.runner.invoke(app, list(args))
        finally:
            configure_logging(self.settings)

    def json(self, *args: str, exit_code: int = 0) -> Any:
        """Run a command with --json, check its exit code and parse what it printed."""
        result = self.run(*args, "--json")
        assert result.exit_code == exit_code, result.output
        return json.loads(result.stdout)


def simkeep_command() -> str:
    """The installed ``simkeep`` command next to this interpreter."""
    return shutil.which("simkeep", path=str(Path(sys.executable).parent)) or "simkeep"


def simkeep(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``simkeep ARGS`` in a child process as an operator would, with ``env`` added to the environment."""
    return subprocess.run(  # noqa: S603 - the installed simkeep command with arguments written in the tests
        [simkeep_command(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def cli_environment(settings: Settings) -> dict[str, str]:
    """The environment that points ``simkeep`` at the database and outbox of ``settings``."""
    return {
        "SIMKEEP_DATABASE_URL": settings.database_url,
        "SIMKEEP_SECRET_KEY": settings.secret_key,
        "SIMKEEP_ENVIRONMENT": "test",
        "SIMKEEP_OTP_TRANSPORT": settings.otp_transport,
        "SIMKEEP_OTP_OUTBOX_DIR": settings.otp_outbox_dir,
        "SIMKEEP_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def cli(queue: Queue, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The CLI on the queue's database."""
    for name, value in cli_environment(queue.settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        yield Cli(CliRunner(), queue.settings)
    finally:
        get_settings.cache_clear()
