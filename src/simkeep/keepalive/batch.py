"""One batch of the daily sweep, set-based: a handful of SQL statements per batch, no Python loop over lines.

The sweep's calendar lives in ``line_calendar (line_id, plan_id, since, next_action_at)``, a narrow table of
its own (one row per live line whose deadline is computed), not in ``lines``: reading a due line and
rewriting its next action touch a small row and two small indexes; the wide ``lines`` row is read and
written only for the lines that are recycled (their number and SIM, their new state).

The batch's due lines (``next_action_at <= now``, read in the order of that index) are copied into a
temporary table ``ka_due`` by one ``INSERT ... SELECT`` that also computes, per plan (a ``CASE`` on the
plan id), the deadline, whether the line is past it, the nearest reminder point crossed and
the next action time: the batch's rows are written once, not rewritten by one ``UPDATE`` per decision.
The reminder points are compared as thresholds computed once in Python (``point P is crossed`` is
``since <= now - (inactivity - P) days``), so the only date arithmetic in SQL is "timestamp plus whole
days", exact on both databases. Then, for the whole batch at once:

- reminders: ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` on ``(line, deadline, days_left)`` (never
  twice), and one ``keepalive.remind`` job per reminder written by the same batch (idempotent by the job
  key; on PostgreSQL in the same statement, from the insert's ``RETURNING``);
- postponement: lines past their deadline with an open replacement order or loss report get
  ``next_action_at = now + 1 day``;
- recycling: SIMs retired, numbers quarantined in the pool (upsert), history rows, one
  ``keepalive.recycle`` job per recycling, one audit entry listing the batch's recycled lines;
- one ``UPDATE`` of ``line_calendar`` writes the live lines' next action, the recycled lines' calendar
  rows are deleted, and one ``UPDATE`` of ``lines`` marks the recycled lines.

Lock order on PostgreSQL, everywhere in keep-alive: a line's calendar row before its ``lines`` row. The
sweep locks the due calendar rows (``SKIP LOCKED``), then (by updating them) the ``lines`` rows of the lines
it recycles; recording activity locks the calendar row, then the line; the activity import upserts the
calendar rows, then updates the lines. Lines whose calendar is not computed yet
(``lines.calendar_pending``, a partial index) are taken by their ``lines`` row (``SKIP LOCKED``).

The results equal those of :mod:`simkeep.keepalive.schedule`'s pure functions (the tests pin them down).
"""

# ruff: noqa: S608 - the SQL text is assembled from constants, enum values and the plans' integers; every
# value that varies (times, ids, limits) is a bound parameter.
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.db.base import UTCDateTime
from simkeep.keepalive.schedule import DAY, NEVER
from simkeep.models import JobState, LineStatus, NumberState, SimStatus

REMIND = "keepalive.remind"
RECYCLE = "keepalive.recycle"
POSTPONE = timedelta(days=1)
JOB_MAX_ATTEMPTS = 8
_STAMP = UTCDateTime()

_DUE_SQLITE = """
CREATE TEMP TABLE IF NOT EXISTS ka_due (
    line_id INTEGER PRIMARY KEY, plan_id INTEGER NOT NULL, since TEXT NOT NULL, msisdn TEXT,
    sim_id INTEGER, deadline_at TEXT, point INTEGER, next_at TEXT, available_at TEXT,
    recycle INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0)
"""
_NEW_SQLITE = "CREATE TEMP TABLE IF NOT EXISTS ka_new (line_id INTEGER PRIMARY KEY, since TEXT NOT NULL)"
_DUE_POSTGRES = """
CREATE TEMP TABLE IF NOT EXISTS ka_due (
    line_id integer PRIMARY KEY, plan_id integer NOT NULL, since timestamptz NOT NULL,
    msisdn varchar(16), sim_id integer, deadline_at timestamptz, point integer,
    next_at timestamptz, available_at timestamptz,
    recycle integer NOT NULL DEFAULT 0, blocked integer NOT NULL DEFAULT 0)
"""


class Dialect:
    """The few SQL spellings that differ between SQLite and PostgreSQL."""

    def __init__(self, session: Session) -> None:
        self.postgres = session.get_bind().dialect.name == "postgresql"
        #: PostgreSQL: the ``wal_compression`` method this role may set for its own transactions, if any.
        self.wal_compression = _wal_compression(session) if self.postgres else None

    def plus_days(self, column: str, days: int) -> str:
        """``column + days`` (whole days of 24 h, in UTC), as stored by :class:`UTCDateTime`."""
        days = int(days)
        if self.postgres:
            return f"({column} + interval '24 hours' * {days})"
        # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff': datetime() drops the fraction, so it is put back.
        return f"(datetime({column}, '{days:+d} days') || substr({column}, 20))"

    def json_object(self, name: str, column: str) -> str:
        """A one-key JSON object ``{name: column}``."""
        function = "json_build_object" if self.postgres else "json_object"
        return f"{function}('{name}', {column})"


def _wal_compression(session: Session) -> str | None:
    """The best ``wal_compression`` method this role may set (superuser, or ``GRANT SET ON PARAMETER``)."""
    row = session.execute(
        text(
            "SELECT enumvals, current_setting('is_superuser') = 'on' OR ("
            "current_setting('server_version_num')::int >= 150000 AND "
            "has_parameter_privilege('wal_compression', 'SET')) "
            "FROM pg_settings WHERE name = 'wal_compression'"
        )
    ).first()
    if row is None or not row[1]:
        return None
    methods = list(row[0] or [])
    return next((m for m in ("lz4", "zstd", "pglz") if m in methods), None)


@contextmanager
def nested_loops(session: Session, sql: Dialect) -> Iterator[None]:
    """On PostgreSQL, joins of the batch's few thousand rows with the big tables by key lookups.

    Left to itself the planner often merge-joins ``ka_due`` with ``lines`` or ``line_calendar`` by walking
    the big table's primary key index from its start (the batch's lines are spread over the whole table):
    millions of index entries read for a few thousand rows. Merge and hash joins are turned off for the
    batch's statements (``SET LOCAL``: restored afterwards, or by the rollback after an error).

    And when the role may set it, ``wal_compression`` for the batch's own transaction: the sweep writes
    pages all over ``line_calendar`` (and the recycled lines' pages), so most of its WAL is full-page
    images, which compress well (measured: 10M lines, PostgreSQL 15, about 12-13 s without, 7 s with lz4).
    An operator may instead turn it on for the whole server (``wal_compression`` in postgresql.conf).
    """
    if not sql.postgres:
        yield
        return
    names = ["enable_mergejoin", "enable_hashjoin"]
    for name in names:
        session.execute(text(f"SET LOCAL {name} = off"))
    if sql.wal_compression is not None:
        names.append("wal_compression")
        session.execute(text(f"SET LOCAL wal_compression = {sql.wal_compression}"))
    yield
    for name in names:
        session.execute(text(f"SET LOCAL {name} TO DEFAULT"))


def stamps(statement: str, *names: str) -> Any:
    """A text statement whose ``names`` are timestamps bound as :class:`UTCDateTime`."""
    return text(statement).bindparams(*(bindparam(n, type_=_STAMP) for n in names))


def prepare(session: Session, sql: Dialect) -> None:
    """The empty ``ka_due`` table of this connection."""
    session.execute(text(_DUE_POSTGRES if sql.postgres else _DUE_SQLITE))
    session.execute(text("TRUNCATE ka_due" if sql.postgres else "DELETE FROM ka_due"))


def thresholds(policy: Any, now: datetime, suffix: str = "") -> dict[str, datetime]:
    """``x<P>``: point ``P`` is crossed when ``since <= x<P>``; ``dead``: the deadline is reached.

    ``suffix`` tells apart the parameters of several plans in one statement.
    """
    inactivity = policy.inactivity_days
    found = {f"x{p}{suffix}": now - (inactivity - p) * DAY for p in policy.points}
    found[f"dead{suffix}"] = now - inactivity * DAY
    return found


def calendar_sets(sql: Dialect, policy: Any, since: str = "since", suffix: str = "") -> tuple[str, str, str]:
    """SQL for one plan over ``since``: ``(deadline, nearest crossed point, next action after now)``.

    Point ``P`` is crossed when ``deadline - P days <= now``, i.e. ``since <= now - (inactivity - P) days``
    (the parameters of :func:`thresholds`); the deadline is reached when ``since <= :dead``.
    """
    inactivity = policy.inactivity_days
    # The nearest point crossed wins.
    crossed = [f"WHEN {since} <= :x{p}{suffix} THEN {p}" for p in sorted(policy.points)]
    point = f"CASE {' '.join(crossed)} END" if crossed else "CAST(NULL AS INTEGER)"
    future = [
        f"WHEN {since} > :x{p}{suffix} THEN {sql.plus_days(since, inactivity - p)}"
        for p in sorted(policy.points, reverse=True)  # largest first: the earliest point still ahead
    ]
    deadline = sql.plus_days(since, inactivity)
    following = f"CASE {' '.join(future)} ELSE {deadline} END" if future else deadline
    return deadline, point, following


def first_action(sql: Dialect, policy: Any, since: str) -> str:
    """SQL of ``next_action_at`` for a freshly computed deadline (:func:`schedule.next_action`).

    Past the deadline: the deadline. Else the time of the nearest point crossed (so the next sweep looks at
    the line at once), else the earliest point ahead (the largest), else the deadline.
    """
    inactivity = policy.inactivity_days
    deadline = sql.plus_days(since, inactivity)
    whens = [f"WHEN {since} <= :dead THEN {deadline}"]
    whens += [
        f"WHEN {since} <= :x{p} THEN {sql.plus_days(since, inactivity - p)}" for p in sorted(policy.points)
    ]
    ahead = sql.plus_days(since, inactivity - max(policy.points)) if policy.points else deadline
    return f"CASE {' '.join(whens)} ELSE {ahead} END"


def compute_missing(
    session: Session, sql: Dialect, *, now: datetime, limit: int, plans: dict[int, Any]
) -> int:
    """Compute the calendar of up to ``limit`` live lines that have none yet, per plan; returns how many.

    Such a line has ``deadline_at IS NULL`` (a new line, or its plan changed): it gets its deadline and its
    ``line_calendar`` row (replacing a stale one).
    """
    done = 0
    since = "COALESCE(last_activity_at, activated_at)"
    # Found by the partial index on ``calendar_pending`` (``deadline_at IS NULL``, a few lines); ``+plan_id``
    # keeps SQLite from walking the plan's (millions of) lines by the plan_id index instead.
    pick = (
        f"SELECT id, {since} AS since FROM lines WHERE calendar_pending "
        f"AND status != '{LineStatus.RECYCLED.value}' AND +plan_id = :plan LIMIT :limit"
    )
    upsert = (
        " ON CONFLICT (line_id) DO UPDATE SET plan_id = excluded.plan_id, since = excluded.since, "
        "next_action_at = excluded.next_action_at"
    )
    for plan_id, policy in sorted(plans.items()):
        if done >= limit:
            break
        params = {**thresholds(policy, now), "plan": plan_id, "limit": limit - done}
        names = [name for name in params if name not in {"plan", "limit"}]
        deadline = sql.plus_days("p.since", policy.inactivity_days)
        if sql.postgres:  # one statement: lock (skipping lines another sweep session took), date, calendar
            count = session.execute(
                stamps(
                    f"WITH p AS ({pick} FOR UPDATE SKIP LOCKED), "
                    f"dated AS (UPDATE lines SET deadline_at = {deadline} FROM p WHERE lines.id = p.id "
                    "RETURNING p.id, p.since), "
                    "cal AS (INSERT INTO line_calendar (line_id, plan_id, since, next_action_at) "
                    f"SELECT id, :plan, since, {first_action(sql, policy, 'since')} FROM dated "
                    f"ORDER BY id{upsert}) "
                    "SELECT COUNT(*) FROM dated",
                    *names,
                ),
                params,
            ).scalar_one()
        else:
            session.execute(text(_NEW_SQLITE))
            session.execute(text("DELETE FROM ka_new"))
            count = session.execute(
                text(f"INSERT INTO ka_new (line_id, since) {pick}"), {"plan": plan_id, "limit": limit - done}
            ).rowcount  # type: ignore[attr-defined]
            if count:
                session.execute(
                    stamps(
                        "INSERT INTO line_calendar (line_id, plan_id, since, next_action_at) "
                        f"SELECT line_id, :plan, since, {first_action(sql, policy, 'since')} FROM ka_new "
                        "WHERE true "
                        f"ORDER BY line_id{upsert}",
                        *names,
                    ),
                    params,
                )
                session.execute(
                    text(
                        f"UPDATE lines SET deadline_at = {sql.plus_days(since, policy.inactivity_days)} "
                        "WHERE id IN (SELECT line_id FROM ka_new)"
                    )
                )
        done += int(count)
    return done


def select_due(session: Session, sql: Dialect, *, now: datetime, limit: int, plans: dict[int, Any]) -> int:
    """Copy up to ``limit`` due lines, in ``next_action_at`` order, into ``ka_due`` with their fate; returns
    how many.

    One ``INSERT ... SELECT`` computes, per plan (a ``CASE`` on the plan), each line's deadline, the point
    crossed, the next action and whether it is recycled; then an open replacement order or loss report
    postpones the recycling by a day (policy).

    On PostgreSQL the due calendar rows are locked (``SKIP LOCKED``): two sweeps (or two workers of one
    sweep) at once share the work instead of both recycling the same line, and a concurrent usage event
    waits for the batch (or the batch for it). SQLite's write lock serialises them.
    """
    params: dict[str, Any] = {"now": now, "limit": limit, "never": NEVER}
    deadlines, points, nexts, fates, availables = [], [], [], [], []
    for plan_id, policy in sorted(plans.items()):
        suffix = f"_{int(plan_id)}"
        params.update(thresholds(policy, now, suffix))
        params[f"available{suffix}"] = now + policy.aging_days * DAY
        deadline, point, following = calendar_sets(sql, policy, "since", suffix)
        when = f"WHEN {int(plan_id)} THEN "
        deadlines.append(when + deadline)
        points.append(when + point)
        fates.append(f"{when}CASE WHEN since <= :dead{suffix} THEN 1 ELSE 0 END")
        nexts.append(f"{when}CASE WHEN since <= :dead{suffix} THEN :never ELSE {following} END")
        availables.append(f"{when}:available{suffix}")
    if not plans:
        return 0

    def by_plan(cases: list[str]) -> str:
        return f"CASE plan_id {' '.join(cases)} END"

    lock = " FOR UPDATE SKIP LOCKED" if sql.postgres else ""
    # Stored in line order, so that the statements that follow visit the lines' pages in order.
    result = session.execute(
        stamps(
            "INSERT INTO ka_due (line_id, plan_id, since, deadline_at, point, next_at, available_at, "
            "recycle) "
            f"SELECT line_id, plan_id, since, {by_plan(deadlines)}, {by_plan(points)}, {by_plan(nexts)}, "
            f"{by_plan(availables)}, COALESCE({by_plan(fates)}, 0) "
            "FROM (SELECT line_id, plan_id, since FROM line_calendar "
            f"WHERE next_action_at <= :now ORDER BY next_action_at LIMIT :limit{lock}) AS due "
            "ORDER BY line_id",
            *(name for name in params if name != "limit"),
        ),
        params,
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count:
        # Policy: an open replacement order or loss report postpones the recycling by a day.
        session.execute(
            stamps(
                "UPDATE ka_due SET recycle = 0, blocked = 1, next_at = :later WHERE recycle = 1 AND ("
                "line_id IN (SELECT open_line_id FROM replacement_orders WHERE open_line_id IS NOT NULL) OR "
                "line_id IN (SELECT open_line_id FROM loss_reports WHERE open_line_id IS NOT NULL))",
                "later",
            ),
            {"later": now + POSTPONE},
        )
        if sql.postgres:
            session.execute(text("ANALYZE ka_due"))  # the planner must know the batch is small
        # The number and SIM of the lines to recycle: the only ones whose lines row the batch reads.
        session.execute(
            text(
                "UPDATE ka_due SET (msisdn, sim_id) = (SELECT l.msisdn, l.sim_id FROM lines AS l "
                "WHERE l.id = ka_due.line_id) WHERE recycle = 1"
            )
        )
    return count


def tally(session: Session) -> tuple[int, int]:
    """``(reminders due, recyclings postponed)`` of the batch."""
    row = session.execute(
        text(
            "SELECT COALESCE(SUM(CASE WHEN point IS NOT NULL AND recycle = 0 AND blocked = 0 "
            "THEN 1 ELSE 0 END), 0), COALESCE(SUM(blocked), 0) FROM ka_due"
        )
    ).one()
    return int(row[0]), int(row[1])


def _max_id(session: Session, table: str) -> int:
    return int(session.scalar(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")) or 0)


def _jobs_from(sql: Dialect, *, field: str, source: str) -> str:
    """``INSERT INTO jobs``: one job per row of ``source`` (a query of ``id``), keyed ``:prefix || id``."""
    return (
        "INSERT INTO jobs (kind, key, payload, state, attempts, max_attempts, run_at, created_at) "
        f"SELECT :kind, :prefix || CAST(s.id AS VARCHAR(20)), {sql.json_object(field, 's.id')}, "
        f"'{JobState.QUEUED.value}', 0, {JOB_MAX_ATTEMPTS}, :now, :now FROM ({source}) AS s "
        "ORDER BY s.id ON CONFLICT (key) DO NOTHING"
    )


def _insert_with_jobs(
    session: Session, sql: Dialect, *, insert: str, table: str, kind: str, field: str, now: datetime
) -> int:
    """Run ``insert`` (rows of ``table`` for the batch's lines) and enqueue one ``kind`` job per row written,
    in the transaction; returns how many rows were written.

    PostgreSQL: one statement (the jobs are made from the insert's ``RETURNING``). SQLite: the insert, then
    the jobs of the rows above the table's highest id before it that belong to the batch's lines.
    """
    params = {"now": now, "kind": kind, "prefix": f"{kind}:"}
    if sql.postgres:
        statement = (
            f"WITH written AS ({insert} RETURNING id), "
            f"queued AS ({_jobs_from(sql, field=field, source='SELECT id FROM written')}) "
            "SELECT COUNT(*) FROM written"
        )
        return int(session.execute(stamps(statement, "now"), params).scalar_one())
    floor = _max_id(session, table)
    count = int(session.execute(stamps(insert, "now"), params).rowcount)  # type: ignore[attr-defined]
    if count:
        source = f"SELECT id FROM {table} WHERE id > {floor} AND line_id IN (SELECT line_id FROM ka_due)"
        session.execute(stamps(_jobs_from(sql, field=field, source=source), "now"), params)
    return count


def remind(session: Session, sql: Dialect, *, now: datetime) -> int:
    """Write the reminders not written yet, each with its message job; returns how many were written."""
    return _insert_with_jobs(
        session, sql, table="keepalive_reminders", kind=REMIND, field="reminder_id", now=now,
        insert="INSERT INTO keepalive_reminders (line_id, deadline_at, days_left, sent_at) "
        "SELECT line_id, deadline_at, point, :now FROM ka_due "
        "WHERE point IS NOT NULL AND recycle = 0 AND blocked = 0 ORDER BY line_id "
        "ON CONFLICT (line_id, deadline_at, days_left) DO NOTHING",
    )  # fmt: skip


def recycle(session: Session, sql: Dialect, *, now: datetime) -> list[int]:
    """Recycle the batch's lines past their deadline (the state; network, message and audit by a job)."""
    ids = [
        int(i) for i in session.scalars(text("SELECT line_id FROM ka_due WHERE recycle = 1 ORDER BY line_id"))
    ]
    if not ids:
        return ids
    session.execute(
        text(
            f"UPDATE sims SET status = '{SimStatus.RETIRED.value}' WHERE id IN "
            "(SELECT sim_id FROM ka_due WHERE recycle = 1 AND sim_id IS NOT NULL)"
        )
    )
    session.execute(
        stamps(
            "INSERT INTO number_pool (msisdn, state, recycled_at, available_at, assigned_at, updated_at) "
            f"SELECT msisdn, '{NumberState.QUARANTINED.value}', :now, available_at, NULL, :now FROM ka_due "
            "WHERE recycle = 1 ORDER BY msisdn "
            "ON CONFLICT (msisdn) DO UPDATE SET state = excluded.state, recycled_at = excluded.recycled_at, "
            "available_at = excluded.available_at, assigned_at = NULL, updated_at = excluded.updated_at",
            "now",
        ),
        {"now": now},
    )
    _insert_with_jobs(
        session, sql, table="number_recyclings", kind=RECYCLE, field="recycling_id", now=now,
        insert="INSERT INTO number_recyclings (msisdn, line_id, recycled_at) "
        "SELECT msisdn, line_id, :now FROM ka_due WHERE recycle = 1 ORDER BY line_id",
    )  # fmt: skip
    record(
        session,
        actor="system:keepalive-sweep",
        action="keepalive.lines_recycled",
        subject_type="sweep",
        subject_id=now.isoformat(),
        data={"line_ids": ids},
    )
    return ids


def write_calendar(session: Session, sql: Dialect, *, now: datetime) -> None:
    """The live due lines' next action (``line_calendar``), the recycled ones' state (``lines``)."""
    recycled = LineStatus.RECYCLED.value
    if sql.postgres:
        session.execute(
            text(
                "UPDATE line_calendar SET next_action_at = d.next_at FROM ka_due AS d "
                "WHERE line_calendar.line_id = d.line_id AND d.recycle = 0"
            )
        )
        lines = (
            f"UPDATE lines SET status = '{recycled}', recycled_at = :now, deadline_at = d.deadline_at "
            "FROM ka_due AS d WHERE lines.id = d.line_id AND d.recycle = 1"
        )
    else:  # SQLite walks ka_due in line order and looks each row up by its key
        session.execute(
            text(
                "UPDATE line_calendar SET next_action_at = "
                "(SELECT d.next_at FROM ka_due AS d WHERE d.line_id = line_calendar.line_id) "
                "WHERE line_id IN (SELECT line_id FROM ka_due WHERE recycle = 0)"
            )
        )
        lines = (
            f"UPDATE lines SET status = '{recycled}', recycled_at = :now, deadline_at = "
            "(SELECT d.deadline_at FROM ka_due AS d WHERE d.line_id = lines.id) "
            "WHERE id IN (SELECT line_id FROM ka_due WHERE recycle = 1)"
        )
    session.execute(
        text("DELETE FROM line_calendar WHERE line_id IN (SELECT line_id FROM ka_due WHERE recycle = 1)")
    )
    session.execute(stamps(lines, "now"), {"now": now})
