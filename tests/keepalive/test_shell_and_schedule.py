"""The keep-alive commands through a real shell, and the daily sweep as the worker runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.db.engine import make_engine, make_session_factory
from simkeep.jobs.worker import Worker
from simkeep.keepalive import tasks
from simkeep.models import Job, JobState, KeepAliveReminder, Line, LineStatus, Notification, UsageEvent
from tests import factories
from tests.helpers import snapshot

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``simkeep ARGS`` in a child process, as an operator types it."""
    command = shutil.which("simkeep", path=str(Path(sys.executable).parent)) or "simkeep"
    return subprocess.run(  # noqa: S603 - the installed simkeep command with arguments written here
        [command, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300, check=False
    )


def _env(settings: Settings) -> dict[str, str]:
    """The environment that points ``simkeep`` at the database of ``settings``."""
    return {
        "SIMKEEP_DATABASE_URL": settings.database_url,
        "SIMKEEP_SECRET_KEY": settings.secret_key,
        "SIMKEEP_ENVIRONMENT": "test",
        "SIMKEEP_OTP_TRANSPORT": settings.otp_transport,
        "SIMKEEP_OTP_OUTBOX_DIR": settings.otp_outbox_dir,
        "SIMKEEP_LOG_LEVEL": "WARNING",
    }


def _lines(engine: Engine, settings: Settings, since: list[datetime]) -> list[int]:
    """Committed lines last active at ``since``, with no calendar yet (the sweep computes it)."""
    ids = []
    with Session(engine) as db:
        for moment in since:
            h = factories.holder(db, settings)
            h.line.activated_at = h.line.last_activity_at = moment
            h.line.deadline_at = None  # the sweep computes the calendar
            ids.append(h.line.id)
        db.commit()
    return ids


class TestSweepCommand:
    """``simkeep keepalive sweep --json`` in a shell."""

    def test_sweep_reports_counts_and_acts(self, fresh: tuple[Engine, Settings]) -> None:
        """Calendars computed, the 30-day reminder and its job written, the lapsed line recycled; once."""
        engine, settings = fresh
        remind, lapse, calm = _lines(engine, settings, [T0, T0 - 40 * DAY, T0 + 100 * DAY])
        now = (T0 + 150 * DAY).isoformat()
        done = _run("keepalive", "sweep", "--json", "--now", now, env=_env(settings))
        assert done.returncode == 0, done.stderr
        counts = json.loads(done.stdout)
        assert {k: counts[k] for k in ("computed", "checked", "reminded", "recycled", "skipped")} == {
            "computed": 3, "checked": 2, "reminded": 1, "recycled": 1, "skipped": 0,
        }  # fmt: skip
        again = json.loads(_run("keepalive", "sweep", "--json", "--now", now, env=_env(settings)).stdout)
        assert (again["checked"], again["reminded"], again["recycled"]) == (0, 0, 0)
        with Session(engine) as db:
            reminders = db.execute(select(KeepAliveReminder.line_id, KeepAliveReminder.days_left)).all()
            assert [tuple(r) for r in reminders] == [(remind, 30)]
            statuses = {i: db.get(Line, i).status for i in (remind, lapse, calm)}  # type: ignore[union-attr]
            assert statuses == {
                remind: LineStatus.ACTIVE,
                lapse: LineStatus.RECYCLED,
                calm: LineStatus.ACTIVE,
            }
            kinds = db.scalars(select(Job.kind).where(Job.kind.like("keepalive.%")).order_by(Job.kind)).all()
            assert kinds == ["keepalive.recycle", "keepalive.remind"]

    def test_bad_now_changes_nothing(self, fresh: tuple[Engine, Settings]) -> None:
        """``--now`` that is not a timestamp: exit 2, a JSON error with its code, no change."""
        engine, settings = fresh
        _lines(engine, settings, [T0 - 40 * DAY])
        with Session(engine) as db:
            before = snapshot(db)
        done = _run("keepalive", "sweep", "--json", "--now", "yesterday", env=_env(settings))
        assert done.returncode == 2
        assert json.loads(done.stdout)["error"] == "INVALID_INPUT"
        with Session(engine) as db:
            assert snapshot(db) == before


class TestImportCommand:
    """``simkeep keepalive import-activity`` in a shell, on a database made by ``simkeep db upgrade``."""

    @pytest.fixture
    def upgraded(self, tmp_path: Path) -> Iterator[tuple[Engine, Settings]]:
        """A SQLite database made by ``simkeep db upgrade``."""
        settings = Settings(
            environment="test",
            secret_key="test-secret-key-0123456789abcdef0123",
            database_url=f"sqlite:///{tmp_path / 'shell.db'}",
            otp_transport="file",
            otp_outbox_dir=str(tmp_path / "outbox"),
        )
        done = _run("db", "upgrade", env=_env(settings))
        assert done.returncode == 0, done.stderr
        engine = make_engine(settings.database_url)
        yield engine, settings
        engine.dispose()

    def test_import_reports_lines_and_moves_clock(
        self, upgraded: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """Good events imported, a duplicate counted once, bad rows listed by line number; the clock moved."""
        engine, settings = upgraded
        (line_id,) = _lines(engine, settings, [T0])
        with Session(engine) as db:
            msisdn = db.get(Line, line_id).msisdn  # type: ignore[union-attr]
        csv = tmp_path / "events.csv"
        csv.write_text(
            "event_id,msisdn,kind,occurred_at\n"
            f"a1,{msisdn},sms,2026-03-01T08:00:00+08:00\n"
            f"a1,{msisdn},sms,2026-03-01T08:00:00+08:00\n"
            f"a2,{msisdn},voice,2026-02-01T00:00:00Z\n"
            "\n"
            f"a3,{msisdn},fax,2026-02-01T00:00:00Z\n"
            'a4,"+8613,sms\n'
            "a5,+8613999999999,sms,2026-02-01T00:00:00Z\n"
            f"a6,{msisdn},sms,2026-02-01T00:00:00\n"
        )
        done = _run("keepalive", "import-activity", str(csv), "--json", env=_env(settings))
        assert done.returncode == 1, done.stderr
        result = json.loads(done.stdout)
        assert (result["imported"], result["already_present"], result["rejected"]) == (2, 1, 4)
        assert [(e["line"], e["field"]) for e in result["errors"]] == [
            (6, "kind"), (7, "row"), (8, "msisdn"), (9, "occurred_at"),
        ]  # fmt: skip
        with Session(engine) as db:
            line = db.get(Line, line_id)
            assert line is not None
            assert line.last_activity_at == datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
            assert line.deadline_at == datetime(2026, 3, 1, tzinfo=UTC) + 180 * DAY
            assert db.scalar(select(func.count()).select_from(UsageEvent)) == 2

    def test_wrong_header_changes_nothing(self, upgraded: tuple[Engine, Settings], tmp_path: Path) -> None:
        """A file without the expected header: exit 2 with its code, nothing imported."""
        engine, settings = upgraded
        _lines(engine, settings, [T0])
        with Session(engine) as db:
            before = snapshot(db)
        csv = tmp_path / "bad.csv"
        csv.write_text("id,number,what,when\ne1,+8613800000000,sms,2026-02-01T00:00:00Z\n")
        done = _run("keepalive", "import-activity", str(csv), "--json", env=_env(settings))
        assert done.returncode == 2
        assert json.loads(done.stdout)["error"] == "IMPORT_FILE_UNREADABLE"
        with Session(engine) as db:
            assert snapshot(db) == before


class TestScheduledSweep:
    """The ``keepalive.sweep`` schedule, run by a worker: batches as jobs, then reminders and recyclings."""

    def test_worker_runs_the_daily_sweep_end_to_end(
        self, fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every due line reminded once and told, the lapsed one recycled, across follow-up batch jobs."""
        engine, settings = fresh
        monkeypatch.setattr(tasks, "BATCH", 2)  # five lines: the sweep needs follow-up batches
        now = utcnow()
        due = _lines(engine, settings, [now - 121 * DAY] * 4)  # 59 days left: the 60-day reminder
        (lapsed,) = _lines(engine, settings, [now - 181 * DAY])
        worker = Worker(settings, make_session_factory(engine), worker_id="test-worker")
        assert any(s.startswith(f"{tasks.SWEEP}@") for s in worker.enqueue_due_schedules(force=True))
        worker.run(exit_when_idle=True)
        with Session(engine) as db:
            reminders = db.execute(select(KeepAliveReminder.line_id, KeepAliveReminder.days_left)).all()
            assert sorted(tuple(r) for r in reminders) == [(i, 60) for i in due]
            assert db.get(Line, lapsed).status == LineStatus.RECYCLED  # type: ignore[union-attr]
            more = db.scalars(select(Job.state).where(Job.kind == tasks.SWEEP_MORE)).all()
            assert more
            assert set(more) == {JobState.DONE}
            states = db.execute(
                select(Job.kind, Job.state).where(Job.kind.in_(["keepalive.remind", "keepalive.recycle"]))
            ).all()
            assert sorted(k for k, _ in states) == ["keepalive.recycle"] + ["keepalive.remind"] * 4
            assert {s for _, s in states} == {JobState.DONE}
            told = db.execute(select(Notification.line_id, Notification.template)).all()
            assert {(i, "keepalive_reminder") for i in due} <= {tuple(t) for t in told}
            assert (lapsed, "keepalive_recycled") in {tuple(t) for t in told}
