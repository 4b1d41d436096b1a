"""The keep-alive domain: activity, the sweep, undo, the number pool."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simkeep.auth.actors import CLI
from simkeep.config import Settings
from simkeep.jobs.worker import drain
from simkeep.keepalive import service
from simkeep.keepalive.errors import (
    GraceOver,
    NotRecycled,
    NumberNotAvailable,
    NumberReassigned,
    UsageEventInvalid,
)
from simkeep.lines.errors import LineNotFound
from simkeep.models import (
    EmbeddedHlrSubscriber,
    KeepAliveReminder,
    Line,
    LineStatus,
    LossReport,
    LossReportStatus,
    Notification,
    NumberRecycling,
    NumberState,
    Plan,
    PoolNumber,
    Sim,
    SimStatus,
    UsageEvent,
)
from tests import factories
from tests.helpers import snapshot

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _line(db: Session, settings: Settings, *, since: datetime = T0) -> factories.Holder:
    h = factories.holder(db, settings)
    h.line.activated_at = since
    h.line.last_activity_at = since
    h.line.deadline_at = None  # the sweep computes the calendar
    db.flush()
    return h


def _reminders(db: Session, line: Line) -> list[int]:
    rows = db.scalars(select(KeepAliveReminder).where(KeepAliveReminder.line_id == line.id))
    return sorted((r.days_left for r in rows), reverse=True)


def _sweep(db: Session, now: datetime, batch: int = 1000) -> service.SweepCounts:
    counts = service.SweepCounts()
    while True:
        c = service.sweep_batch(db, now=now, limit=batch)
        counts.add(c)
        if c.checked + c.computed == 0:
            db.expire_all()
            return counts


class TestReminders:
    """Reminders: once per point crossed, nearest only."""

    def test_exactly_at_each_point(self, db: Session, settings: Settings) -> None:
        """At deadline - P days exactly, reminder P goes out; a second before, none."""
        h = _line(db, settings)
        deadline = T0 + 180 * DAY
        for point in (60, 30, 7, 1):
            _sweep(db, deadline - point * DAY - timedelta(seconds=1))
            assert point not in _reminders(db, h.line)
            _sweep(db, deadline - point * DAY)
            assert point in _reminders(db, h.line)
        assert _reminders(db, h.line) == [60, 30, 7, 1]

    def test_twice_a_day_sends_once(self, db: Session, settings: Settings) -> None:
        """Sweeping twice on the same day sends one reminder."""
        h = _line(db, settings)
        now = T0 + 120 * DAY
        first = _sweep(db, now)
        second = _sweep(db, now + timedelta(hours=12))
        assert first.reminded == 1
        assert second.reminded == 0
        assert _reminders(db, h.line) == [60]

    def test_missed_days_send_nearest_point_only(self, db: Session, settings: Settings) -> None:
        """After missed sweeps, only the nearest crossed point is sent, no burst."""
        h = _line(db, settings)
        _sweep(db, T0 + 175 * DAY)  # 5 days left: 60, 30 and 7 crossed
        assert _reminders(db, h.line) == [7]

    def test_reminder_job_notifies_holder(self, db: Session, settings: Settings) -> None:
        """The queued reminder becomes a notification to the holder."""
        h = _line(db, settings)
        _sweep(db, T0 + 150 * DAY)
        drain(db, settings)
        templates = db.scalars(select(Notification.template).where(Notification.line_id == h.line.id)).all()
        assert "keepalive_reminder" in templates

    def test_time_zone_of_event(self, db: Session, settings: Settings) -> None:
        """An event stamped +08:00 counts at its UTC instant."""
        h = _line(db, settings)
        service.record_usage(db, event_id="tz1", msisdn=h.msisdn, kind="sms",
                             occurred_at="2026-02-01T08:00:00+08:00", now=T0 + 40 * DAY)  # fmt: skip
        assert h.line.last_activity_at == datetime(2026, 2, 1, 0, 0, tzinfo=UTC)
        assert h.line.deadline_at == datetime(2026, 7, 31, 0, 0, tzinfo=UTC)

    def test_leap_day(self, db: Session, settings: Settings) -> None:
        """A window across 29 February 2028 counts that day; the deadline lands 180 days later."""
        since = datetime(2028, 1, 1, tzinfo=UTC)
        h = _line(db, settings, since=since)
        _sweep(db, since)
        assert h.line.deadline_at == datetime(2028, 6, 29, tzinfo=UTC)
        assert _sweep(db, datetime(2028, 6, 28, 23, 59, tzinfo=UTC)).recycled == 0
        assert _sweep(db, datetime(2028, 6, 29, tzinfo=UTC)).recycled == 1


class TestActivity:
    """Usage events move the clock forward only."""

    def test_out_of_order(self, db: Session, settings: Settings) -> None:
        """A late, older event never moves last_activity_at back."""
        h = _line(db, settings)
        now = T0 + 50 * DAY
        service.record_usage(
            db, event_id="e2", msisdn=h.msisdn, kind="voice", occurred_at=T0 + 40 * DAY, now=now
        )
        service.record_usage(
            db, event_id="e1", msisdn=h.msisdn, kind="voice", occurred_at=T0 + 20 * DAY, now=now
        )
        assert h.line.last_activity_at == T0 + 40 * DAY
        assert h.line.deadline_at == T0 + 220 * DAY

    def test_duplicate(self, db: Session, settings: Settings) -> None:
        """The same event id twice is stored once and answered as a duplicate."""
        h = _line(db, settings)
        now = T0 + 50 * DAY
        service.record_usage(db, event_id="d", msisdn=h.msisdn, kind="data", occurred_at=T0 + DAY, now=now)
        again = service.record_usage(
            db, event_id="d", msisdn=h.msisdn, kind="data", occurred_at=T0 + 9 * DAY, now=now
        )
        assert again.duplicate
        assert db.scalar(select(func.count()).select_from(UsageEvent).where(UsageEvent.event_id == "d")) == 1
        assert h.line.last_activity_at == T0 + DAY

    def test_non_counting_kind(self, db: Session, settings: Settings) -> None:
        """A kind the plan does not count is stored but does not move the clock."""
        h = _line(db, settings)
        plan = db.get(Plan, h.line.plan_id)
        assert plan is not None
        plan.counting_kinds = ["topup"]
        db.flush()
        r = service.record_usage(
            db, event_id="n", msisdn=h.msisdn, kind="sms", occurred_at=T0 + DAY, now=T0 + 2 * DAY
        )
        assert not r.counted
        assert h.line.last_activity_at == T0

    @pytest.mark.parametrize(
        ("field", "value"),
        [("event_id", ""), ("msisdn", "12345"), ("kind", "fax"), ("occurred_at", "yesterday"),
         ("occurred_at", "2026-01-02T00:00:00"), ("occurred_at", "2099-01-01T00:00:00Z")],
    )  # fmt: skip
    def test_bad_event_changes_nothing(self, db: Session, settings: Settings, field: str, value: str) -> None:
        """A malformed event is refused with a clear error and changes nothing."""
        h = _line(db, settings)
        event = {"event_id": "x", "msisdn": h.msisdn, "kind": "sms", "occurred_at": "2026-01-02T00:00:00Z"}
        event[field] = value
        before = snapshot(db)
        with pytest.raises(UsageEventInvalid):
            service.record_usage(db, now=T0 + 5 * DAY, **event)
        assert snapshot(db) == before

    def test_unknown_number(self, db: Session, settings: Settings) -> None:
        """An event for a number no line has is refused."""
        with pytest.raises(LineNotFound):
            service.record_usage(
                db, event_id="u", msisdn="+8613999999999", kind="sms", occurred_at=T0, now=T0
            )

    def test_plan_change_midway(self, db: Session, settings: Settings) -> None:
        """A shortened window, rescheduled, applies at the next sweep, with the nearest reminder."""
        h = _line(db, settings)
        _sweep(db, T0 + 10 * DAY)
        plan = db.get(Plan, h.line.plan_id)
        assert plan is not None
        plan.inactivity_days = 40
        service.reschedule_plan(db, plan_id=plan.id)
        db.expire_all()
        counts = _sweep(db, T0 + 35 * DAY)  # 5 days left under the new window
        line = db.get(Line, h.line.id)
        assert line is not None
        assert counts.reminded == 1
        assert _reminders(db, line) == [7]
        assert _sweep(db, T0 + 40 * DAY).recycled == 1


class TestRecycling:
    """At the deadline the line is recycled; policy postpones some."""

    def test_recycle_at_deadline(self, db: Session, settings: Settings) -> None:
        """At the deadline: recycled, SIM retired, number quarantined, history, holder told, HLR cleared."""
        h = _line(db, settings)
        deadline = T0 + 180 * DAY
        assert _sweep(db, deadline - timedelta(seconds=1)).recycled == 0
        assert _sweep(db, deadline).recycled == 1
        db.expire_all()
        line = db.get(Line, h.line.id)
        assert line is not None
        assert line.status == LineStatus.RECYCLED
        assert line.recycled_at == deadline
        assert db.get(Sim, h.sim.id).status == SimStatus.RETIRED  # type: ignore[union-attr]
        pool = db.get(PoolNumber, h.msisdn)
        assert pool is not None
        assert pool.state == NumberState.QUARANTINED
        assert pool.available_at == deadline + 90 * DAY
        drain(db, settings)
        assert db.get(EmbeddedHlrSubscriber, h.sim.imsi) is None
        templates = db.scalars(select(Notification.template).where(Notification.line_id == h.line.id)).all()
        assert "keepalive_recycled" in templates

    def test_open_loss_report_postpones(self, db: Session, settings: Settings) -> None:
        """A line with an open loss report is not recycled (counted as skipped)."""
        h = _line(db, settings)
        db.add(
            LossReport(
                reference="LR-KA-1",
                line_id=h.line.id,
                sim_id=h.sim.id,
                open_line_id=h.line.id,
                reason="lost",
                status=LossReportStatus.OPEN,
                reported_by="test",
                report_proof="test",
            )
        )
        db.flush()
        counts = _sweep(db, T0 + 181 * DAY)
        assert (counts.recycled, counts.skipped) == (0, 1)
        assert db.get(Line, h.line.id).status != LineStatus.RECYCLED  # type: ignore[union-attr]
        report = db.scalars(select(LossReport).where(LossReport.line_id == h.line.id)).one()
        report.open_line_id = None
        db.flush()
        assert _sweep(db, T0 + 182 * DAY).recycled == 1

    def test_killed_sweep_rerun(self, db: Session, settings: Settings) -> None:
        """A sweep that dies after one committed batch, rerun: no reminder twice, nothing recycled early."""
        holders = [_line(db, settings) for _ in range(5)]
        now = T0 + 150 * DAY

        def die(counts: service.SweepCounts) -> None:
            if counts.batches == 1:
                raise RuntimeError("killed")

        with pytest.raises(RuntimeError):
            service.sweep(db, now=now, batch_size=2, after_batch=die)
        service.sweep(db, now=now, batch_size=2)
        service.sweep(db, now=now, batch_size=2)
        for h in holders:
            assert _reminders(db, h.line) == [30]
            assert db.get(Line, h.line.id).status == LineStatus.ACTIVE  # type: ignore[union-attr]


class TestUndoAndPool:
    """Undo within the grace; the pool ages and assigns; recycled_after answers."""

    def _recycled(self, db: Session, settings: Settings) -> tuple[factories.Holder, datetime]:
        h = _line(db, settings)
        at = T0 + 180 * DAY
        _sweep(db, at)
        drain(db, settings)
        return h, at

    def test_undo_within_grace(self, db: Session, settings: Settings) -> None:
        """Within the grace the line comes back, with its SIM in the network and a fresh window."""
        h, at = self._recycled(db, settings)
        line = service.restore_line(db, settings, msisdn=h.msisdn, actor=CLI, now=at + 10 * DAY)
        assert line.status == LineStatus.ACTIVE
        assert line.deadline_at == at + 190 * DAY
        assert db.get(EmbeddedHlrSubscriber, h.sim.imsi) is not None
        assert db.get(PoolNumber, h.msisdn) is None

    def test_undo_after_grace(self, db: Session, settings: Settings) -> None:
        """After the grace the undo is refused and nothing changes."""
        h, at = self._recycled(db, settings)
        before = snapshot(db)
        with pytest.raises(GraceOver):
            service.restore_line(db, settings, msisdn=h.msisdn, actor=CLI, now=at + 31 * DAY)
        assert snapshot(db) == before

    def test_undo_not_recycled(self, db: Session, settings: Settings) -> None:
        """Undo of a live line is refused."""
        h = _line(db, settings)
        with pytest.raises(NotRecycled):
            service.restore_line(db, settings, msisdn=h.msisdn, actor=CLI, now=T0)

    def test_aging_assign_and_recycled_after(self, db: Session, settings: Settings) -> None:
        """Quarantine ends after aging; the number goes to a new holder; recycled_after tells."""
        h, at = self._recycled(db, settings)
        number = h.msisdn
        other = factories.holder(db, settings)
        with pytest.raises(NumberNotAvailable):
            service.assign_number(db, msisdn=h.msisdn, subscriber_id=other.subscriber.id, plan_code="keep",
                                  actor=CLI, now=at + 89 * DAY)  # fmt: skip
        assert _sweep(db, at + 90 * DAY).released == 0  # released by release_aged_numbers
        assert service.release_aged_numbers(db, now=at + 90 * DAY) == 1
        new = service.assign_number(db, msisdn=h.msisdn, subscriber_id=other.subscriber.id, plan_code="keep",
                                    actor=CLI, now=at + 91 * DAY)  # fmt: skip
        assert new.msisdn == number
        history = db.scalars(select(NumberRecycling).where(NumberRecycling.msisdn == number)).one()
        assert history.reassigned_at == at + 91 * DAY
        assert service.recycled_after(db, number, date(2026, 1, 1))
        assert service.recycled_after(db, number, (at + 91 * DAY).date())
        assert not service.recycled_after(db, number, (at + 92 * DAY).date())
        assert not service.recycled_after(db, "+8613900000001", date(2020, 1, 1))
        with pytest.raises(NumberReassigned):
            service.restore_line(db, settings, msisdn=number, actor=CLI, now=at + 92 * DAY)


class TestVisible:
    """Days left and the reminders sent are shown to the holder and to staff."""

    def test_portal_home_lists_the_reminders(self, db: Session, settings: Settings, client: object) -> None:
        """After the 60-day reminder, the holder's home lists it."""
        from fastapi.testclient import TestClient

        from simkeep.auth import service as auth_service

        assert isinstance(client, TestClient)
        h = _line(db, settings)
        _sweep(db, T0 + 121 * DAY)
        assert _reminders(db, h.line) == [60]
        token = auth_service.sign_in_line(db, settings, msisdn=h.msisdn, service_password=factories.PASSWORD)
        client.cookies.set("sk_session", token.access_token)
        page = client.get("/portal")
        assert page.status_code == 200
        assert 'data-testid="reminders"' in page.text
        assert "60" in page.text.split('data-testid="reminders"', 1)[1].split("</ul>", 1)[0]

    def test_console_line_page_lists_the_reminders(
        self, db: Session, settings: Settings, client: object
    ) -> None:
        """A clerk's view of the line shows the reminders sent."""
        from fastapi.testclient import TestClient

        from simkeep.auth import service as auth_service
        from simkeep.models import StaffRole

        assert isinstance(client, TestClient)
        h = _line(db, settings)
        _sweep(db, T0 + 121 * DAY)
        clerk = factories.staff(db, StaffRole.CLERK)
        token = auth_service.sign_in_staff(
            db, settings, username=clerk.username, password=factories.STAFF_PASSWORD
        )
        client.cookies.set("sk_session", token.access_token)
        page = client.get(f"/console/lines/{h.line.id}")
        assert page.status_code == 200, page.text[:500]
        assert 'data-testid="reminders"' in page.text
