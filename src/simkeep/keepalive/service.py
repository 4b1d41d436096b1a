"""Keeping numbers alive: recording activity, the daily sweep, undoing a recycling, the number pool.

Policies (documented choices):

- **One reminder per point crossed, the nearest only.** The sweep sends, for a line's current deadline, the
  reminder of the nearest point crossed (``days_left`` at most ``P``), at most once: the unique
  ``(line, deadline_at, days_left)`` reminder row guards it, also when the sweep runs twice a day or is
  rerun after a crash. After a missed day (or for a line first seen with 10 days left) only the nearest
  point crossed is sent, not a burst of every point skipped. A new deadline (new activity, plan change)
  starts a new cycle.
- **Recycling** happens at the first sweep at or after the deadline. The sweep changes the state in bulk
  (line ``recycled``, SIM ``retired``, the number quarantined in the pool until ``recycled_at +
  aging_days``, a :class:`NumberRecycling` row, one audit entry per batch) and enqueues, in the same
  transaction, one ``keepalive.recycle`` job per line that retires the IMSI in the network, tells the
  holder and writes the line's own audit entry (durable work done by the worker, with retries).
- **An open replacement order or an open loss report postpones recycling** (by a day, re-checked daily):
  the holder is busy getting a new SIM, or cannot use the line through no fault of theirs. Reminders are
  still sent. Such lines are counted as ``skipped``.
- **Undo** (admin) within ``grace_days`` after the recycling and only while the number was not given to
  anyone else; it restores the SIM in the network and restarts the inactivity window from the undo.
- **Reassignment** frees the ``lines.msisdn`` unique key by renaming the recycled line's number to
  ``~<line id>``; the real number stays in :class:`NumberRecycling` and the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, select, update
from sqlalchemy.orm import Session

import simkeep.keepalive.templates as _templates  # noqa: F401 - registers the message templates
from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput
from simkeep.identifiers import E164, normalise_msisdn
from simkeep.keepalive import batch, schedule
from simkeep.keepalive.errors import (
    GraceOver,
    NotRecycled,
    NumberNotAvailable,
    NumberReassigned,
    PlanNotFound,
    SubscriberNotFound,
    UsageEventInvalid,
)
from simkeep.lines.errors import LineNotFound, LineRecycled
from simkeep.models import (
    KeepAliveReminder,
    Line,
    LineStatus,
    NetworkOpKind,
    NumberRecycling,
    NumberState,
    Plan,
    PoolNumber,
    Sim,
    SimStatus,
    Subscriber,
    UsageEvent,
    UsageKind,
)
from simkeep.models.keepalive import LineCalendar
from simkeep.network import operations

CLOCK_SKEW = timedelta(minutes=5)
LINES = cast(Table, Line.__table__)
POOL = cast(Table, PoolNumber.__table__)
SIMS = cast(Table, Sim.__table__)
CALENDAR = cast(Table, LineCalendar.__table__)


def _insert(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


@dataclass(frozen=True)
class PlanPolicy:
    """A plan's keep-alive figures, as the sweep and the import use them."""

    id: int
    inactivity_days: int
    points: tuple[int, ...]
    grace_days: int
    aging_days: int
    counting: frozenset[str]

    @classmethod
    def of(cls, plan: Plan) -> PlanPolicy:
        """The policy of ``plan``."""
        return cls(
            plan.id,
            plan.inactivity_days,
            schedule.points_of(plan.reminder_days or [], plan.inactivity_days),
            plan.grace_days,
            max(45, plan.aging_days),
            frozenset(plan.counting_kinds or []),
        )

    def calendar(self, since: datetime, now: datetime) -> tuple[datetime, datetime]:
        """``(deadline_at, next_action_at)`` for a line last active (or activated) at ``since``."""
        deadline = schedule.deadline_of(since, self.inactivity_days)
        return deadline, schedule.next_action(deadline, self.points, now)


def set_calendar(session: Session, line: Line, policy: PlanPolicy, *, since: datetime, now: datetime) -> None:
    """Give ``line`` (live, flushed) the deadline of an activity at ``since`` and its sweep calendar row."""
    line.deadline_at, next_action_at = policy.calendar(since, now)
    row = {"plan_id": line.plan_id, "since": since, "next_action_at": next_action_at}
    session.execute(
        _insert(session)(LineCalendar)
        .values(line_id=line.id, **row)
        .on_conflict_do_update(index_elements=["line_id"], set_=row)
    )


def next_action_of(session: Session, line_id: int) -> datetime | None:
    """When the sweep next looks at the line (``None``: recycled, or its calendar is not computed yet)."""
    return session.scalar(select(LineCalendar.next_action_at).where(LineCalendar.line_id == line_id))


def policies(session: Session) -> dict[int, PlanPolicy]:
    """Every plan's policy, by plan id."""
    return {plan.id: PlanPolicy.of(plan) for plan in session.scalars(select(Plan))}


# --- activity ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedEvent:
    """The outcome of one usage event."""

    event_id: str
    duplicate: bool
    counted: bool
    last_activity_at: datetime | None
    deadline_at: datetime | None
    days_left: int | None


def parse_time(text: str) -> datetime:
    """An event's ISO 8601 time, as the API and the activity import read it; ValueError if malformed.

    A NUL is refused first: Python 3.11's ``fromisoformat`` stops at a NUL after the time and takes what
    it read."""
    if "\x00" in text:
        raise ValueError(text)
    return datetime.fromisoformat(text)


def parse_event(  # noqa: PLR0911 - one early return per field, in order
    *, event_id: object, msisdn: object, kind: object, occurred_at: object, now: datetime
) -> tuple[str, str, UsageKind, datetime] | tuple[str, str]:
    """A checked event ``(event_id, msisdn, kind, occurred_at)``, or ``(field, reason)``."""
    if not isinstance(event_id, str) or not event_id or len(event_id) > 80 or not event_id.isprintable():
        return "event_id", "required, 1 to 80 printable characters"
    if not isinstance(msisdn, str) or not E164.match(msisdn):
        return "msisdn", "an E.164 number like +8613800138000"
    try:
        usage = UsageKind(str(kind))
    except ValueError:
        return "kind", "one of " + ", ".join(k.value for k in UsageKind)
    if isinstance(occurred_at, str):
        try:
            stamp = parse_time(occurred_at)
        except ValueError:
            return "occurred_at", "not an ISO 8601 timestamp (like 2024-05-01T08:30:00+08:00)"
    elif isinstance(occurred_at, datetime):
        stamp = occurred_at
    else:
        return "occurred_at", "required"
    if stamp.tzinfo is None:
        return "occurred_at", "needs a time zone (Z or +08:00)"
    stamp = stamp.astimezone(UTC)
    if stamp > now + CLOCK_SKEW:
        return "occurred_at", "is in the future"
    return event_id, msisdn, usage, stamp


def record_usage(
    session: Session,
    *,
    event_id: object,
    msisdn: object,
    kind: object,
    occurred_at: object,
    now: datetime | None = None,
) -> RecordedEvent:
    """Record one usage event (idempotent by ``event_id``); a counting event moves the line's clock on."""
    now = now or utcnow()
    checked = parse_event(event_id=event_id, msisdn=msisdn, kind=kind, occurred_at=occurred_at, now=now)
    if len(checked) == 2:
        raise UsageEventInvalid(f"{checked[0]}: {checked[1]}", field=checked[0])
    eid, number, usage, stamp = checked
    line_id = session.scalar(select(Line.id).where(Line.msisdn == number))
    if line_id is None:
        raise LineNotFound("No such line.")
    # The keep-alive lock order: the calendar row (the sweep holds it while it works on the line), then the
    # line.
    session.execute(select(CALENDAR.c.line_id).where(CALENDAR.c.line_id == line_id).with_for_update())
    line = session.get(Line, line_id, with_for_update=True, populate_existing=True)
    assert line is not None
    if line.status == LineStatus.RECYCLED:
        raise LineRecycled("This number was recycled.")
    plan = session.get(Plan, line.plan_id)
    assert plan is not None
    policy = PlanPolicy.of(plan)
    counted = usage.value in policy.counting
    inserted = session.execute(
        _insert(session)(UsageEvent)
        .values(
            event_id=eid, line_id=line.id, kind=usage, occurred_at=stamp, counted=counted, received_at=now
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(UsageEvent.event_id)
    ).first()
    since = line.last_activity_at or line.activated_at
    if inserted is not None and counted and stamp > since:
        line.last_activity_at = since = stamp
        set_calendar(session, line, policy, since=stamp, now=now)
        session.flush()
    deadline = line.deadline_at or schedule.deadline_of(since, policy.inactivity_days)
    return RecordedEvent(
        eid, inserted is None, counted, line.last_activity_at, deadline, schedule.days_left(deadline, now)
    )


def reschedule_plan(session: Session, *, plan_id: int) -> int:
    """After a plan's figures changed: its live lines are recomputed by the next sweep; returns how many."""
    session.execute(  # calendar rows first: the keep-alive lock order
        delete(CALENDAR).where(CALENDAR.c.line_id.in_(select(LINES.c.id).where(LINES.c.plan_id == plan_id)))
    )
    result = session.execute(
        update(LINES)
        .where(LINES.c.plan_id == plan_id, LINES.c.status != LineStatus.RECYCLED.value)
        .values(deadline_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- the sweep --------------------------------------------------------------------------------------------


@dataclass
class SweepCounts:
    """What a sweep did."""

    computed: int = 0  # lines whose calendar was computed for the first time
    checked: int = 0  # due lines looked at
    reminded: int = 0
    recycled: int = 0
    skipped: int = 0  # reminder already sent, or recycling postponed by policy
    released: int = 0  # pool numbers whose aging ended
    batches: int = 0

    def add(self, other: SweepCounts) -> None:
        """Add ``other``'s counts to these."""
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, int]:
        """The counts as JSON."""
        return asdict(self)


def release_aged_numbers(session: Session, *, now: datetime) -> int:
    """Quarantined numbers whose aging has ended become available; returns how many."""
    result = session.execute(
        update(POOL)
        .where(
            POOL.c.state == NumberState.QUARANTINED.value,
            POOL.c.available_at <= now,
        )
        .values(state=NumberState.AVAILABLE.value, updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def sweep_batch(session: Session, *, now: datetime, limit: int = 20_000) -> SweepCounts:
    """One batch of the sweep, in the caller's transaction: uncomputed lines first, then due lines.

    Set-based (:mod:`simkeep.keepalive.batch`): a dozen statements whatever the batch size. Returns the
    counts; ``checked + computed == 0`` means nothing is left to do for ``now``.
    """
    plans = policies(session)
    sql = batch.Dialect(session)
    with batch.nested_loops(session, sql):
        return _sweep_batch(session, sql, plans, now=now, limit=limit)


def _sweep_batch(
    session: Session, sql: batch.Dialect, plans: dict[int, PlanPolicy], *, now: datetime, limit: int
) -> SweepCounts:
    counts = SweepCounts(batches=1)
    counts.computed = batch.compute_missing(session, sql, now=now, limit=limit, plans=plans)
    if counts.computed >= limit:
        return counts
    batch.prepare(session, sql)
    counts.checked = batch.select_due(session, sql, now=now, limit=limit - counts.computed, plans=plans)
    if not counts.checked:
        return counts
    due, postponed = batch.tally(session)
    counts.reminded = batch.remind(session, sql, now=now)
    counts.recycled = len(batch.recycle(session, sql, now=now))
    batch.write_calendar(session, sql, now=now)
    counts.skipped = due - counts.reminded + postponed
    return counts


#: Sessions sweeping at once on PostgreSQL by default: the server works on both cores of a small machine,
#: each session taking its own due lines (``SKIP LOCKED``). SQLite has one writer: one session.
PG_WORKERS = 2


def sweep(
    session: Session,
    *,
    now: datetime | None = None,
    batch_size: int = 20_000,
    after_batch: Callable[[SweepCounts], None] | None = None,
    workers: int | None = None,
) -> SweepCounts:
    """The whole sweep for ``now``: pool aging, then batches, each committed as it goes.

    Resumable: a rerun after a crash continues with what is still due; reminders are never sent twice (the
    unique reminder row) and no line is recycled before its deadline (recomputed from its activity).

    On PostgreSQL ``workers`` sessions (default :data:`PG_WORKERS`; ``session`` and new ones on its engine)
    run batches side by side; the row locks of :func:`batch.select_due` give each due line to exactly one
    of them. A worker stops when it finds nothing left; the first error stops the others after their
    current batch and is raised (what was committed stays done, a rerun does the rest).
    """
    now = now or utcnow()
    total = SweepCounts()
    total.released = release_aged_numbers(session, now=now)
    session.commit()
    engine = session.get_bind()
    # Helpers need connections of their own: a session bound to one connection (a test's) sweeps alone.
    parallel = isinstance(engine, Engine) and engine.dialect.name == "postgresql"
    count = (workers or PG_WORKERS) if parallel else 1
    lock = threading.Lock()
    failed = threading.Event()

    def work(own: Session) -> None:
        try:
            while not failed.is_set():
                counts = sweep_batch(own, now=now, limit=batch_size)
                own.commit()
                with lock:
                    total.add(counts)
                    if after_batch is not None:
                        after_batch(total)
                if counts.checked + counts.computed == 0:
                    return
        except BaseException:
            failed.set()
            own.rollback()
            raise

    if count <= 1:
        work(session)
        return total
    with ThreadPoolExecutor(max_workers=count - 1, thread_name_prefix="keepalive-sweep") as pool:

        def helper() -> None:
            with Session(engine) as own:
                work(own)

        helpers = [pool.submit(helper) for _ in range(count - 1)]
        try:
            work(session)
        finally:
            for future in helpers:
                future.exception()  # wait for every helper before raising
    for future in helpers:
        future.result()
    return total


# --- the jobs' work ---------------------------------------------------------------------------------------


def send_reminder(
    session: Session, settings: Settings | None, *, reminder_id: int, days: int | None = None
) -> bool:
    """Tell the holder of a reminder's line; False (nothing sent) when the line moved on since.

    ``days`` (days left) defaults to the days left when the sweep wrote the reminder.
    """
    from simkeep.notifications.service import notify

    reminder = session.get(KeepAliveReminder, reminder_id)
    line = session.get(Line, reminder.line_id) if reminder else None
    if reminder is None or line is None or line.status == LineStatus.RECYCLED:
        return False
    if line.deadline_at is not None and line.deadline_at != reminder.deadline_at:
        return False  # activity since the sweep: the reminder is moot
    subscriber = session.get(Subscriber, line.subscriber_id)
    assert subscriber is not None
    if days is None:
        days = schedule.days_left(reminder.deadline_at, reminder.sent_at)
    notify(
        session, settings, subscriber=subscriber, line=line, template="keepalive_reminder",
        days=days, date=reminder.deadline_at.date().isoformat(),
    )  # fmt: skip
    return True


def finish_recycling(session: Session, settings: Settings | None, *, recycling_id: int) -> bool:
    """Retire the SIM in the network, tell the holder and audit; False when the recycling was undone."""
    from simkeep.notifications.service import notify

    recycling = session.get(NumberRecycling, recycling_id)
    line = session.get(Line, recycling.line_id) if recycling else None
    if (
        recycling is None
        or line is None
        or recycling.undone_at is not None
        or line.status != LineStatus.RECYCLED
    ):
        return False
    sim = session.get(Sim, line.sim_id) if line.sim_id else None
    if sim is not None:
        operations.schedule(
            session, settings, kind=NetworkOpKind.REMOVE, line_id=line.id, old_imsi=sim.imsi,
            actor="system:keepalive-sweep",
        )  # fmt: skip
    plan = session.get(Plan, line.plan_id)
    subscriber = session.get(Subscriber, line.subscriber_id)
    assert plan is not None
    assert subscriber is not None
    notify(
        session, settings, subscriber=subscriber, line=line, template="keepalive_recycled",
        date=recycling.recycled_at.date().isoformat(), grace_days=plan.grace_days,
    )  # fmt: skip
    record(
        session, actor="system:keepalive-sweep", action="line.recycled", subject_type="line",
        subject_id=line.id, data={"recycling_id": recycling.id, "deadline_at": str(line.deadline_at)},
    )  # fmt: skip
    return True


# --- undo -------------------------------------------------------------------------------------------------


def _latest_recycling(session: Session, msisdn: str) -> NumberRecycling | None:
    return session.scalar(
        select(NumberRecycling)
        .where(NumberRecycling.msisdn == msisdn, NumberRecycling.undone_at.is_(None))
        .order_by(NumberRecycling.recycled_at.desc(), NumberRecycling.id.desc())
        .limit(1)
    )


def restore_line(
    session: Session, settings: Settings | None, *, msisdn: str, actor: Actor, now: datetime | None = None
) -> Line:
    """Undo a recycling within the plan's grace, if the number was not given to anyone else (admin)."""
    from simkeep.notifications.service import notify

    now = now or utcnow()
    number = normalise_msisdn(msisdn)
    recycling = _latest_recycling(session, number)
    if recycling is None:
        line = session.scalar(select(Line).where(Line.msisdn == number))
        if line is None:
            raise LineNotFound("No such line.")
        raise NotRecycled("This number is not recycled.")
    if recycling.reassigned_at is not None:
        raise NumberReassigned("The number was given to another subscriber; the recycling cannot be undone.")
    line = session.get(Line, recycling.line_id, with_for_update=True)
    assert line is not None
    if line.status != LineStatus.RECYCLED:
        raise NotRecycled("This number is not recycled.")
    plan = session.get(Plan, line.plan_id)
    assert plan is not None
    if now > recycling.recycled_at + timedelta(days=plan.grace_days):
        raise GraceOver(f"The {plan.grace_days}-day grace after the recycling is over.")
    sim = session.get(Sim, line.sim_id) if line.sim_id else None
    if sim is not None:
        operations.schedule(
            session, settings, kind=NetworkOpKind.MOVE, line_id=line.id, msisdn=line.msisdn,
            new_imsi=sim.imsi, actor=actor.label,
        )  # fmt: skip
        sim.status = SimStatus.ACTIVE
    recycling.undone_at = now
    pool = session.get(PoolNumber, number)
    if pool is not None:
        session.delete(pool)
    line.status = LineStatus.ACTIVE
    line.recycled_at = None
    line.last_activity_at = now  # the undo restarts the inactivity window
    set_calendar(session, line, PlanPolicy.of(plan), since=now, now=now)
    subscriber = session.get(Subscriber, line.subscriber_id)
    assert subscriber is not None
    notify(session, settings, subscriber=subscriber, line=line, template="keepalive_restored")
    record(
        session, actor=actor.label, action="line.recycling_undone", subject_type="line", subject_id=line.id,
        data={"recycling_id": recycling.id},
    )  # fmt: skip
    session.flush()
    return line


# --- the number pool --------------------------------------------------------------------------------------


def assign_number(
    session: Session,
    *,
    msisdn: str,
    subscriber_id: int,
    plan_code: str,
    actor: Actor,
    sim_id: int | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> Line:
    """Give an available pool number to a subscriber as a new line; records ``reassigned_at``."""
    now = now or utcnow()
    number = normalise_msisdn(msisdn)
    pool = session.get(PoolNumber, number, with_for_update=True)
    if pool is None or pool.state != NumberState.AVAILABLE or pool.available_at > now:
        raise NumberNotAvailable("This number is not available in the pool.")
    if session.get(Subscriber, subscriber_id) is None:
        raise SubscriberNotFound("No such subscriber.")
    plan = session.scalar(select(Plan).where(Plan.code == plan_code))
    if plan is None:
        raise PlanNotFound("No such plan.")
    old = session.scalar(select(Line).where(Line.msisdn == number))
    if old is not None:
        if old.status != LineStatus.RECYCLED:
            raise NumberNotAvailable("This number is held by a live line.")
        old.msisdn = f"~{old.id}"  # frees the unique number; the history keeps the real one
        session.flush()
    sim = session.get(Sim, sim_id) if sim_id is not None else None
    if sim_id is not None and (sim is None or sim.status not in {SimStatus.IN_STOCK, SimStatus.RESERVED}):
        raise InvalidInput("The SIM is not in stock.", code="SIM_NOT_AVAILABLE")
    line = Line(
        msisdn=number, subscriber_id=subscriber_id, plan_id=plan.id, status=LineStatus.ACTIVE,
        sim_id=sim.id if sim else None, activated_at=now, last_activity_at=None,
    )  # fmt: skip
    session.add(line)
    session.flush()
    set_calendar(session, line, PlanPolicy.of(plan), since=now, now=now)
    if sim is not None:
        operations.schedule(
            session, settings, kind=NetworkOpKind.MOVE, line_id=line.id, msisdn=number, new_imsi=sim.imsi,
            actor=actor.label,
        )  # fmt: skip
        sim.status = SimStatus.ACTIVE
    pool.state, pool.assigned_at, pool.updated_at = NumberState.ASSIGNED, now, now
    recycling = _latest_recycling(session, number)
    if recycling is not None and recycling.reassigned_at is None:
        recycling.reassigned_at, recycling.new_line_id = now, line.id
    record(
        session, actor=actor.label, action="number.assigned", subject_type="line", subject_id=line.id,
        data={"subscriber_id": subscriber_id, "plan": plan.code},
    )  # fmt: skip
    session.flush()
    return line


def recycled_after(session: Session, msisdn: str, date: date | datetime) -> bool:
    """Whether the number was given to another subscriber after ``date`` (CAMARA Number Recycling).

    True when a recycling of ``msisdn`` that was not undone has ``reassigned_at`` after the given moment. A
    ``datetime`` is compared as is (naive means UTC). A calendar ``date`` (CAMARA's ``specifiedDate``) counts
    from its start in UTC, so a reassignment on that very day answers True: the safe answer for a relying
    party that bound the number that day. A number that was recycled but not given to anyone yet is not
    recycled in CAMARA's sense (the subscriber did not change).
    """
    if isinstance(date, datetime):
        since = date if date.tzinfo else date.replace(tzinfo=UTC)
    else:
        since = datetime(date.year, date.month, date.day, tzinfo=UTC)
    found = session.scalar(
        select(NumberRecycling.id)
        .where(
            NumberRecycling.msisdn == msisdn,
            NumberRecycling.undone_at.is_(None),
            NumberRecycling.reassigned_at.is_not(None),
            NumberRecycling.reassigned_at >= since,
        )
        .limit(1)
    )
    return found is not None


def reminder_history(session: Session, line_id: int, *, limit: int = 20) -> list[KeepAliveReminder]:
    """The line's reminders, newest first."""
    return list(
        session.scalars(
            select(KeepAliveReminder)
            .where(KeepAliveReminder.line_id == line_id)
            .order_by(KeepAliveReminder.sent_at.desc(), KeepAliveReminder.id.desc())
            .limit(limit)
        )
    )


def pool_numbers(
    session: Session, *, states: Iterable[NumberState] | None = None, limit: int = 100
) -> list[PoolNumber]:
    """Numbers of the pool, oldest recycling first."""
    stmt = select(PoolNumber).order_by(PoolNumber.recycled_at).limit(limit)
    if states is not None:
        stmt = stmt.where(PoolNumber.state.in_(list(states)))
    return list(session.scalars(stmt))
