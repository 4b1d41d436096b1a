"""Synthetic data shared by the keep-alive benchmarks: one plan, one holder, N lines made by bulk SQL."""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from simkeep.db import migrate
from simkeep.db.engine import make_engine
from simkeep.models import DocumentType, Plan, Subscriber

POSTGRES_URL = os.environ.get("SIMKEEP_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

# Days since the last activity: 0..180 evenly. With the activity an hour past the day boundary this is the
# steady state of a daily sweep: every day 1/181 of the lines reach each of the points 60, 30, 7, 1 and 1/181
# reach the deadline (about 2.8 % of the lines are due, 2.2 % reminders and 0.55 % recyclings).
_NEXT = "CASE WHEN d <= 120 THEN 120 - d WHEN d <= 150 THEN 150 - d WHEN d <= 173 THEN 173 - d " \
        "WHEN d <= 179 THEN 179 - d ELSE 180 - d END"  # fmt: skip


def database(backend: str) -> tuple[Engine, str]:
    """A fresh, migrated database (SQLite file, or a new PostgreSQL schema)."""
    if backend == "sqlite":
        path = os.path.join(tempfile.mkdtemp(prefix="simkeep-bench-"), "bench.db")
        url = f"sqlite:///{path}"
    else:
        schema = f"bench_{os.getpid()}"
        admin = make_engine(POSTGRES_URL, pool_size=1)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    return engine, url


def drop(engine: Engine, backend: str) -> None:
    """Remove the benchmark's database (the SQLite file's folder, or the PostgreSQL schema)."""
    engine.dispose()
    if backend == "sqlite":
        database_path = engine.url.database
        if database_path:
            shutil.rmtree(os.path.dirname(database_path), ignore_errors=True)
        return
    if backend == "postgres":
        admin = make_engine(POSTGRES_URL, pool_size=1)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "bench_{os.getpid()}" CASCADE'))
        admin.dispose()


def make_lines(engine: Engine, n: int, now: datetime) -> None:
    """N live lines with their keep-alive calendar (``line_calendar``), as yesterday's sweep left it.

    Line ``i`` was last active ``i % 181`` days ago: the lines due today are spread evenly over the tables
    (one line in about 36), not gathered in a corner of them.
    """
    with Session(engine) as session:
        plan = Plan(code="keep", name="Number keeper")
        sub = Subscriber(
            real_name="Bench",
            document_type=DocumentType.PASSPORT,
            document_number_hmac="0" * 64,
            document_number_last4="0000",
            contact_email="bench@example.org",
        )
        session.add_all([plan, sub])
        session.commit()
        plan_id, sub_id = plan.id, sub.id
    base = now - timedelta(hours=1)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            b = base.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
            series = "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :n), " \
                     "t AS (SELECT i, i % 181 AS d FROM s) "  # fmt: skip
            conn.execute(
                text(
                    f"{series}INSERT INTO lines (id, msisdn, subscriber_id, plan_id, status, "
                    "sim_change_lock, activated_at, last_activity_at, deadline_at, created_at, updated_at) "
                    "SELECT i + 1, '+86130' || printf('%08d', i), :sub, :plan, 'active', 0, "
                    "datetime(:b, '-' || (d + 400) || ' days') || '.000000', "
                    "datetime(:b, '-' || d || ' days') || '.000000', "
                    "datetime(:b, '+' || (180 - d) || ' days') || '.000000', :b, :b FROM t"
                ),
                {"n": n, "sub": sub_id, "plan": plan_id, "b": b},
            )
            conn.execute(
                text(
                    f"{series}INSERT INTO line_calendar (line_id, plan_id, since, next_action_at) "
                    "SELECT i + 1, :plan, datetime(:b, '-' || d || ' days') || '.000000', "
                    f"datetime(:b, '+' || ({_NEXT}) || ' days') || '.000000' FROM t"
                ),
                {"n": n, "b": b, "plan": plan_id},
            )
        else:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            series = "FROM (SELECT i, i % 181 AS d FROM generate_series(0, :n - 1) AS i) AS t"
            conn.execute(
                text(
                    "INSERT INTO lines (id, msisdn, subscriber_id, plan_id, status, sim_change_lock, "
                    "activated_at, last_activity_at, deadline_at, created_at, updated_at) "
                    "SELECT i + 1, '+86130' || lpad(i::text, 8, '0'), :sub, :plan, 'active', false, "
                    "CAST(:b AS timestamptz) - (d + 400) * interval '1 day', "
                    "CAST(:b AS timestamptz) - d * interval '1 day', "
                    f"CAST(:b AS timestamptz) + (180 - d) * interval '1 day', :b, :b {series}"
                ),
                {"n": n, "sub": sub_id, "plan": plan_id, "b": base},
            )
            conn.execute(text("SELECT setval(pg_get_serial_sequence('lines', 'id'), :n)"), {"n": n})
            conn.execute(
                text(
                    "INSERT INTO line_calendar (line_id, plan_id, since, next_action_at) "
                    "SELECT i + 1, :plan, CAST(:b AS timestamptz) - d * interval '1 day', "
                    f"CAST(:b AS timestamptz) + ({_NEXT}) * interval '1 day' {series}"
                ),
                {"n": n, "b": base, "plan": plan_id},
            )
    if engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        return
    # PostgreSQL: the state a database in use is in, not the aftermath of a bulk load: vacuumed (hint bits
    # and visibility map set, as autovacuum leaves them) and checkpointed (the load's dirty pages written),
    # so that the sweep's figure holds the sweep's own work, not the load's.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) lines, line_calendar"))
        conn.execute(text("ANALYZE"))
        conn.execute(text("CHECKPOINT"))
