"""Benchmark the job queue: drain a backlog of 200,000 ``notification.deliver`` jobs with the real worker.

Run from the repository root: ``python bench/jobs_drain.py [--jobs N] [--backends sqlite,postgres]``. For each
backend it makes a freshly migrated database (a temporary SQLite file; a new schema in
SIMKEEP_BENCH_POSTGRES_URL, dropped afterwards), bulk-inserts the backlog (one holder, N queued
notifications and their delivery jobs, as ``notify`` would have written them), then runs
``simkeep worker --exit-when-idle`` as a user would, with the ``null`` transport: one process on SQLite, two
started together on PostgreSQL. The wall time runs from starting the workers to the last one exiting, and
the script checks that every job is done and every notification sent. The last lines are
``RESULT jobs_drain_<backend> <jobs/s> jobs/s``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from simkeep.db.base import utcnow
from simkeep.models import DocumentType, Job, JobState, Notification, Subscriber
from simkeep.notifications.tasks import DELIVER
from sims_import import fresh_database, postgres_available  # a sibling script: run from bench/

WORKERS = {"sqlite": 1, "postgres": 2}
CHUNK = 10_000


def seed_backlog(engine: Engine, jobs: int) -> None:
    """One holder and ``jobs`` queued notifications, each with its delivery job, inserted in bulk."""
    now = utcnow()
    with engine.begin() as conn:
        subscriber_id = conn.execute(
            insert(Subscriber)
            .values(
                real_name="Bench Holder",
                document_type=DocumentType.CN_RIC,
                document_number_hmac="0" * 64,
                document_number_last4="002X",
                contact_email="bench@example.org",
                language="en",
                created_at=now,
                updated_at=now,
            )
            .returning(Subscriber.id)
        ).scalar_one()
    for start in range(1, jobs + 1, CHUNK):
        ids = range(start, min(start + CHUNK, jobs + 1))
        with engine.begin() as conn:
            conn.execute(
                insert(Notification),
                [
                    {
                        "id": i,
                        "subscriber_id": subscriber_id,
                        "line_id": None,
                        "channel": "email",
                        "destination": "bench@example.org",
                        "destination_masked": "b***@example.org",
                        "template": "password_changed",
                        "language": "en",
                        "params": {"msisdn": "+86 138 **** 0001"},
                        "status": "queued",
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(Job),
                [
                    {
                        "kind": DELIVER,
                        "key": f"notification:{i}",
                        "payload": {"notification_id": i},
                        "state": JobState.QUEUED,
                        "attempts": 0,
                        "max_attempts": 8,
                        "run_at": now,
                        "created_at": now,
                    }
                    for i in ids
                ],
            )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('notifications', 'id'), :n)"), {"n": jobs}
            )
            conn.execute(text("ANALYZE"))


@dataclass
class Drain:
    """One measured drain."""

    seconds: float
    reports: list[dict[str, Any]]


def drain(database_url: str, workers: int, batch: int | None) -> Drain:
    """Start ``workers`` ``simkeep worker --exit-when-idle`` processes together; wait for all of them."""
    exe = shutil.which("simkeep", path=str(Path(sys.executable).parent)) or "simkeep"
    env = {
        **os.environ,
        "SIMKEEP_DATABASE_URL": database_url,
        "SIMKEEP_OTP_TRANSPORT": "null",
        "SIMKEEP_LOG_LEVEL": "WARNING",
        "SIMKEEP_ENVIRONMENT": "test",
    }
    args = [exe, "worker", "--exit-when-idle", "--json", *(["--batch", str(batch)] if batch else [])]
    started = time.perf_counter()
    children = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE) for _ in range(workers)]
    outputs = [child.communicate()[0] for child in children]
    seconds = time.perf_counter() - started
    for child, out in zip(children, outputs, strict=True):
        if child.returncode != 0:
            sys.exit(f"simkeep worker exited with {child.returncode}: {out.decode()[:2000]}")
    return Drain(seconds, [json.loads(out) for out in outputs])


def check(engine: Engine, jobs: int) -> None:
    """Every job done, every notification sent."""
    with engine.connect() as conn:
        left = conn.scalar(select(func.count()).select_from(Job).where(Job.state != JobState.DONE))
        sent = conn.scalar(
            select(func.count()).select_from(Notification).where(Notification.status == "sent")
        )
    if left or sent != jobs:
        sys.exit(f"after the drain: {left} jobs not done, {sent} of {jobs} notifications sent")


def main() -> None:
    """Seed the backlog and drain it on each backend; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200_000, help="jobs in the backlog")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument("--batch", type=int, default=None, help="jobs per batch (default: the setting)")
    options = parser.parse_args()
    results: list[str] = []
    with tempfile.TemporaryDirectory(prefix="simkeep-bench-") as tmp:
        for backend in options.backends.split(","):
            if backend == "postgres" and not postgres_available():
                continue
            with fresh_database(backend, Path(tmp)) as (url, engine):
                started = time.perf_counter()
                seed_backlog(engine, options.jobs)
                print(f"{backend}: seeded {options.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
                run = drain(url, WORKERS[backend], options.batch)
                check(engine, options.jobs)
            done = sum(int(r["done"]) for r in run.reports)
            rate = options.jobs / run.seconds
            print(
                f"{backend}: {WORKERS[backend]} worker(s) drained {options.jobs:,} jobs in "
                f"{run.seconds:.2f} s = {rate:,.0f} jobs/s ({done:,} done in all, scheduled ones included)"
            )
            results.append(f"RESULT jobs_drain_{backend} {rate:.0f} jobs/s")
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
