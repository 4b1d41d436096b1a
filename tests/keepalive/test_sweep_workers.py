"""The sweep's parallel workers (PostgreSQL): every due line handled by exactly one of them, and a worker's
failure leaves a state that a rerun completes. On SQLite the sweep runs alone and the same outcomes hold."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.keepalive import batch, schedule, service
from simkeep.models import Job, KeepAliveReminder, Line, LineStatus, NumberRecycling
from simkeep.models.keepalive import LineCalendar
from tests import factories

NOW = datetime(2027, 6, 1, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POINTS = (60, 30, 7, 1)
#: Days since the last activity of the lines: due for each point, at and past the deadline, not due.
AGES = [120, 150, 173, 179, 180, 185, 100, 10]


def _make(engine: Engine, settings: Settings, copies: int) -> list[int]:
    """``copies`` lines of each age in AGES, committed, with the calendar yesterday's sweep left."""
    ids = []
    with Session(engine) as db:
        for _ in range(copies):
            for age in AGES:
                h = factories.holder(db, settings)
                since = NOW - age * DAY - timedelta(hours=1)
                h.line.activated_at = h.line.last_activity_at = since
                deadline = schedule.deadline_of(since, 180)
                h.line.deadline_at = deadline
                db.flush()
                db.add(
                    LineCalendar(
                        line_id=h.line.id,
                        plan_id=h.line.plan_id,
                        since=since,
                        next_action_at=schedule.next_action(deadline, POINTS, NOW - DAY),
                    )
                )
                db.flush()
                ids.append(h.line.id)
        db.commit()
    return ids


def _expected(age: int) -> tuple[list[int], bool]:
    """The reminders (days left) and whether the line is recycled, after one sweep at NOW."""
    deadline = NOW - age * DAY - timedelta(hours=1) + 180 * DAY
    if deadline <= NOW:
        return [], True
    point = schedule.crossed_point(deadline, POINTS, NOW)
    crossed_yesterday = schedule.crossed_point(deadline, POINTS, NOW - DAY)
    return ([point] if point is not None and point != crossed_yesterday else []), False


def _check(engine: Engine, ids: list[int]) -> None:
    with Session(engine) as db:
        for line_id in ids:
            line = db.get(Line, line_id)
            assert line is not None
            age = AGES[ids.index(line_id) % len(AGES)]
            reminders, recycled = _expected(age)
            sent = db.scalars(select(KeepAliveReminder.days_left).where(KeepAliveReminder.line_id == line_id))
            assert sorted(sent) == reminders, age
            assert (line.status == LineStatus.RECYCLED) is recycled, age
            next_action_at = service.next_action_of(db, line_id)
            if recycled:
                assert next_action_at is None, age  # the sweep has nothing more to do with it
            else:
                assert next_action_at is not None
                assert next_action_at > NOW, age  # nothing left due
        recyclings = db.scalar(select(func.count()).select_from(NumberRecycling)) or 0
        reminders_total = db.scalar(select(func.count()).select_from(KeepAliveReminder)) or 0
        jobs = db.scalar(
            select(func.count()).select_from(Job).where(Job.kind.in_([batch.REMIND, batch.RECYCLE]))
        )
        assert jobs == recyclings + reminders_total  # one job each, never two
        assert recyclings == sum(_expected(a)[1] for a in AGES) * (len(ids) // len(AGES))


class TestSweepWorkers:
    """Several sessions sweeping the same day at once."""

    def test_workers_share_the_lines(self, fresh: tuple[Engine, Settings]) -> None:
        """Three workers, small batches: each reminder written once, each lapsed line recycled once."""
        engine, settings = fresh
        ids = _make(engine, settings, copies=6)
        with Session(engine) as db:
            counts = service.sweep(db, now=NOW, batch_size=4, workers=3)
        assert counts.checked == len([i for n, i in enumerate(ids) if AGES[n % len(AGES)] >= 120])
        _check(engine, ids)
        with Session(engine) as db:  # a second sweep the same day finds nothing to do
            again = service.sweep(db, now=NOW, batch_size=4, workers=3)
        assert (again.reminded, again.recycled) == (0, 0)
        _check(engine, ids)

    def test_two_sweeps_at_once(self, fresh: tuple[Engine, Settings]) -> None:
        """Two whole sweeps started together (two schedulers): the same outcome as one."""
        engine, settings = fresh
        ids = _make(engine, settings, copies=5)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with Session(engine) as db:
                    service.sweep(db, now=NOW, batch_size=3, workers=2)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors and engine.dialect.name == "sqlite":
            pytest.skip(f"SQLite writers queue on the busy timeout: {errors[0]}")  # pragma: no cover
        assert errors == []
        _check(engine, ids)

    def test_failed_worker_then_rerun(
        self, fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A worker dies mid-sweep: the sweep raises; a rerun finishes without sending anything twice."""
        engine, settings = fresh
        ids = _make(engine, settings, copies=6)
        real = batch.recycle
        calls = {"n": 0}
        guard = threading.Lock()

        def flaky(*args: object, **kwargs: object) -> list[int]:
            with guard:
                calls["n"] += 1
                boom = calls["n"] == 2
            if boom:
                raise RuntimeError("worker died")
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(batch, "recycle", flaky)
        with Session(engine) as db, pytest.raises(RuntimeError, match="worker died"):
            service.sweep(db, now=NOW, batch_size=4, workers=2)
        monkeypatch.setattr(batch, "recycle", real)
        with Session(engine) as db:
            service.sweep(db, now=NOW, batch_size=4, workers=2)
        _check(engine, ids)
