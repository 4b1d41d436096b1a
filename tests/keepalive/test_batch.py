"""The set-based sweep and import compute in SQL what the calendar's pure functions say, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.keepalive import schedule, service
from simkeep.keepalive.importer import import_activity
from simkeep.models import KeepAliveReminder, Line, LineStatus, Plan
from simkeep.models.keepalive import LineCalendar
from tests import factories

NOW = datetime(2028, 3, 1, 0, 0, 0, 250_000, tzinfo=UTC)  # just after a leap day
DAY = timedelta(days=1)
POINTS = (60, 30, 7, 1)
#: Days before NOW of the last activity: each reminder point and the deadline exactly, a microsecond
#: either side, and days between.
OFFSETS = [
    timedelta(days=180 - p) + delta
    for p in (*POINTS, 0)
    for delta in (-timedelta(microseconds=1), timedelta(0), timedelta(microseconds=1))
] + [timedelta(days=d, hours=5, microseconds=123) for d in (0, 10, 119, 150, 170, 178, 200)]


def _lines(db: Session, settings: Settings, offsets: list[timedelta]) -> list[Line]:
    made = []
    for offset in offsets:
        h = factories.holder(db, settings)
        h.line.activated_at = h.line.last_activity_at = NOW - offset
        h.line.deadline_at = None  # the sweep computes the calendar
        made.append(h.line)
    db.flush()
    return made


class TestSetBasedCalendar:
    """The sweep's SQL against :mod:`simkeep.keepalive.schedule`."""

    def test_computed_calendar_matches_pure_functions(self, db: Session, settings: Settings) -> None:
        """A line first seen by the sweep gets the deadline and next action of ``schedule.next_action``."""
        lines = _lines(db, settings, OFFSETS)
        counts = service.sweep_batch(db, now=NOW, limit=len(lines))
        assert counts.computed == len(lines)
        db.expire_all()
        for line in lines:
            deadline = schedule.deadline_of(line.last_activity_at, 180)  # type: ignore[arg-type]
            assert (line.deadline_at, service.next_action_of(db, line.id)) == (
                deadline,
                schedule.next_action(deadline, POINTS, NOW),
            ), line.last_activity_at

    def test_due_lines_match_pure_functions(self, db: Session, settings: Settings) -> None:
        """Due lines: the nearest point crossed is sent, the next point is next; lapsed lines recycled."""
        lines = _lines(db, settings, OFFSETS)
        for line in lines:
            line.deadline_at = schedule.deadline_of(line.last_activity_at, 180)  # type: ignore[arg-type]
        db.flush()
        for line in lines:
            since = line.last_activity_at
            assert since is not None
            db.add(LineCalendar(line_id=line.id, plan_id=line.plan_id, since=since, next_action_at=NOW - DAY))
        db.flush()
        service.sweep_batch(db, now=NOW, limit=1000)
        db.expire_all()
        for line in lines:
            deadline = schedule.deadline_of(line.last_activity_at, 180)  # type: ignore[arg-type]
            sent = db.scalars(select(KeepAliveReminder).where(KeepAliveReminder.line_id == line.id)).all()
            if deadline <= NOW:
                assert line.status == LineStatus.RECYCLED
                assert line.recycled_at == NOW
                assert sent == []
                continue
            point = schedule.crossed_point(deadline, POINTS, NOW)
            assert [(r.days_left, r.deadline_at) for r in sent] == ([(point, deadline)] if point else [])
            assert service.next_action_of(db, line.id) == schedule.next_after(deadline, POINTS, NOW)
            assert line.deadline_at == deadline

    def test_plan_without_points_goes_to_the_deadline(self, db: Session, settings: Settings) -> None:
        """A plan with no reminder points: no reminder, the next action is the deadline."""
        (line,) = _lines(db, settings, [timedelta(days=100)])
        plan = db.get(Plan, line.plan_id)
        assert plan is not None
        plan.reminder_days = []
        db.flush()
        assert service.sweep_batch(db, now=NOW).reminded == 0
        db.expire_all()
        assert service.next_action_of(db, line.id) == NOW - 100 * DAY + 180 * DAY


SINCE = datetime(2025, 1, 1, tzinfo=UTC)


class TestImportClock:
    """The import moves clocks with the same calendar, and only with events it stored."""

    def test_import_moves_the_clock_and_the_sweep_finds_the_next_action(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """The newest counting event of the file moves the clock, the deadline and the calendar's ``since``;
        the calendar keeps its (now early) next action, where the sweep looks at the line, sends nothing and
        writes the next action the API would have written."""
        engine, settings = fresh
        with Session(engine) as db:
            h = factories.holder(db, settings)
            h.line.activated_at = h.line.last_activity_at = SINCE
            h.line.deadline_at = SINCE + 180 * DAY
            db.flush()
            db.add(
                LineCalendar(
                    line_id=h.line.id, plan_id=h.line.plan_id, since=SINCE, next_action_at=SINCE + 120 * DAY
                )
            )
            db.commit()
            line_id, msisdn = h.line.id, h.msisdn
        newest = datetime(2026, 11, 2, 3, 4, 5, 678_901, tzinfo=UTC)
        csv = tmp_path / "e.csv"
        csv.write_text(
            "event_id,msisdn,kind,occurred_at\n"
            f"n1,{msisdn},data,{(newest - DAY).isoformat()}\n"
            f"n2,{msisdn},sms,{newest.isoformat()}\n"
            f"n3,{msisdn},data,{(newest - 2 * DAY).isoformat()}\n"
        )
        result = import_activity(engine, settings, csv)
        assert result.imported == 3
        with Session(engine) as db:
            line = db.get(Line, line_id)
            assert line is not None
            assert line.last_activity_at == newest
            assert line.deadline_at == newest + 180 * DAY
            calendar = db.get(LineCalendar, line.id)
            assert calendar is not None
            assert (calendar.since, calendar.next_action_at) == (newest, SINCE + 120 * DAY)
            counts = service.sweep_batch(db, now=SINCE + 120 * DAY, limit=100)
            assert (counts.checked, counts.reminded, counts.recycled) == (1, 0, 0)
            assert db.scalars(select(KeepAliveReminder)).all() == []
            # No point crossed yet: the 60-day point next, as the API sets it.
            assert service.next_action_of(db, line.id) == newest + 120 * DAY

    def test_import_computes_the_calendar_of_a_line_without_one(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """A line whose calendar is not computed yet (new, or its plan rescheduled) gets all of it."""
        engine, settings = fresh
        with Session(engine) as db:
            h = factories.holder(db, settings)
            h.line.activated_at = h.line.last_activity_at = SINCE
            h.line.deadline_at = None
            db.commit()
            line_id, msisdn = h.line.id, h.msisdn
        newest = datetime(2026, 11, 2, 3, 4, 5, 678_901, tzinfo=UTC)
        csv = tmp_path / "e.csv"
        csv.write_text(f"event_id,msisdn,kind,occurred_at\nm1,{msisdn},sms,{newest.isoformat()}\n")
        assert import_activity(engine, settings, csv).imported == 1
        with Session(engine) as db:
            line = db.get(Line, line_id)
            calendar = db.get(LineCalendar, line_id)
            assert line is not None
            assert calendar is not None
            assert (line.deadline_at, calendar.since) == (newest + 180 * DAY, newest)
            assert calendar.next_action_at == newest + 120 * DAY

    def test_duplicate_id_never_moves_a_clock(self, fresh: tuple[Engine, Settings], tmp_path: Path) -> None:
        """An event id stored before, now claimed for another line and a later time, moves nothing."""
        engine, settings = fresh
        with Session(engine) as db:
            first, second = factories.holder(db, settings), factories.holder(db, settings)
            for h in (first, second):
                h.line.activated_at = h.line.last_activity_at = SINCE
            db.commit()
            ids = (first.line.id, second.line.id)
            numbers = (first.msisdn, second.msisdn)
        early = tmp_path / "early.csv"
        early.write_text(f"event_id,msisdn,kind,occurred_at\nd1,{numbers[0]},sms,2026-01-05T00:00:00Z\n")
        assert import_activity(engine, settings, early).imported == 1
        late = tmp_path / "late.csv"
        late.write_text(
            "event_id,msisdn,kind,occurred_at\n"
            f"d1,{numbers[1]},sms,2026-06-01T00:00:00Z\n"
            f"d2,{numbers[0]},topup,2026-02-01T00:00:00Z\n"
        )
        result = import_activity(engine, settings, late)
        assert (result.imported, result.already_present) == (1, 1)
        with Session(engine) as db:
            moved = [db.get(Line, i).last_activity_at for i in ids]  # type: ignore[union-attr]
        assert moved == [datetime(2026, 2, 1, tzinfo=UTC), SINCE]
