"""The sweep calendar (``line_calendar``): kept in step with the lines by every keep-alive writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from simkeep.auth.actors import CLI
from simkeep.config import Settings
from simkeep.jobs.worker import drain
from simkeep.keepalive import service
from simkeep.models import Line, LineStatus, Plan
from simkeep.models.keepalive import LineCalendar
from tests import factories

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _line(db: Session, settings: Settings, *, since: datetime = T0) -> factories.Holder:
    h = factories.holder(db, settings)
    h.line.activated_at = h.line.last_activity_at = since
    h.line.deadline_at = None  # the sweep computes the calendar
    db.flush()
    return h


def _sweep(db: Session, now: datetime) -> service.SweepCounts:
    counts = service.SweepCounts()
    while True:
        c = service.sweep_batch(db, now=now, limit=1000)
        counts.add(c)
        if c.checked + c.computed == 0:
            db.expire_all()
            return counts


def _row(db: Session, line_id: int) -> dict[str, Any]:
    return dict(db.execute(text("SELECT * FROM lines WHERE id = :id"), {"id": line_id}).mappings().one())


class TestLineCalendar:
    """One calendar row per live line whose deadline is computed; the sweep writes lines only to recycle."""

    def test_first_sweep_computes_calendar(self, db: Session, settings: Settings) -> None:
        """A new line (no deadline) gets its deadline and a calendar row at the earliest point ahead."""
        h = _line(db, settings)
        assert service.next_action_of(db, h.line.id) is None
        assert _sweep(db, T0 + DAY).computed == 1
        assert h.line.deadline_at == T0 + 180 * DAY
        assert service.next_action_of(db, h.line.id) == T0 + 120 * DAY  # the 60-day point

    def test_reminder_leaves_the_line_row_alone(self, db: Session, settings: Settings) -> None:
        """Sending a reminder moves the calendar row on and writes nothing to the line."""
        h = _line(db, settings)
        _sweep(db, T0 + DAY)
        before = _row(db, h.line.id)
        counts = _sweep(db, T0 + 120 * DAY)
        assert (counts.checked, counts.reminded) == (1, 1)
        assert _row(db, h.line.id) == before
        assert service.next_action_of(db, h.line.id) == T0 + 150 * DAY  # the 30-day point

    def test_recycling_removes_the_calendar_row_and_undo_restores_it(
        self, db: Session, settings: Settings
    ) -> None:
        """A recycled line has no calendar row; the undo gives it one for its fresh window."""
        h = _line(db, settings)
        at = T0 + 180 * DAY
        assert _sweep(db, at).recycled == 1
        assert h.line.status == LineStatus.RECYCLED
        assert service.next_action_of(db, h.line.id) is None
        drain(db, settings)
        service.restore_line(db, settings, msisdn=h.msisdn, actor=CLI, now=at + DAY)
        assert service.next_action_of(db, h.line.id) == at + DAY + 120 * DAY
        assert _sweep(db, at + 2 * DAY).checked == 0

    def test_activity_moves_the_calendar(self, db: Session, settings: Settings) -> None:
        """A counting event moves the deadline and the calendar row together."""
        h = _line(db, settings)
        _sweep(db, T0 + DAY)
        at = T0 + 50 * DAY
        service.record_usage(db, event_id="c1", msisdn=h.msisdn, kind="sms", occurred_at=at, now=at)
        assert h.line.deadline_at == at + 180 * DAY
        assert service.next_action_of(db, h.line.id) == at + 120 * DAY
        assert _sweep(db, T0 + 120 * DAY).checked == 0  # the old 60-day point is gone

    def test_activity_on_a_new_line_gives_it_a_calendar(self, db: Session, settings: Settings) -> None:
        """A counting event on a line the sweep has not seen yet computes its calendar at once."""
        h = _line(db, settings)
        at = T0 + DAY
        service.record_usage(db, event_id="c2", msisdn=h.msisdn, kind="data", occurred_at=at, now=at)
        assert h.line.deadline_at == at + 180 * DAY
        assert service.next_action_of(db, h.line.id) == at + 120 * DAY

    def test_plan_change_recomputes_the_calendar(self, db: Session, settings: Settings) -> None:
        """Rescheduling a plan drops its lines' calendar rows; the next sweep computes the new ones."""
        h = _line(db, settings)
        _sweep(db, T0 + DAY)
        plan = db.get(Plan, h.line.plan_id)
        assert plan is not None
        plan.inactivity_days = 90
        plan.reminder_days = [30]
        assert service.reschedule_plan(db, plan_id=plan.id) >= 1
        db.expire_all()
        assert service.next_action_of(db, h.line.id) is None
        assert _sweep(db, T0 + 2 * DAY).computed >= 1
        line = db.get(Line, h.line.id)
        assert line is not None
        assert line.deadline_at == T0 + 90 * DAY
        assert service.next_action_of(db, h.line.id) == T0 + 60 * DAY

    def test_assigned_number_gets_a_calendar(self, db: Session, settings: Settings) -> None:
        """A line made from a pool number starts with its calendar (no sweep needed to compute it)."""
        h = _line(db, settings)
        at = T0 + 180 * DAY
        _sweep(db, at)
        drain(db, settings)
        service.release_aged_numbers(db, now=at + 90 * DAY)
        other = factories.holder(db, settings)
        new = service.assign_number(
            db, msisdn=h.msisdn, subscriber_id=other.subscriber.id, plan_code="keep", actor=CLI,
            now=at + 91 * DAY,
        )  # fmt: skip
        assert new.deadline_at == at + 91 * DAY + 180 * DAY
        rows = db.scalars(select(LineCalendar).where(LineCalendar.line_id == new.id)).all()
        assert [r.next_action_at for r in rows] == [at + 91 * DAY + 120 * DAY]
