"""The activity import (``simkeep keepalive import-activity``) over many batches: whatever the batch size, and
whichever checks a batch takes (column-wise when all its lines are good, line by line otherwise), the outcome
is that of a line-by-line import; a failure keeps the batches written before it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.keepalive import importer
from simkeep.keepalive.importer import import_activity
from simkeep.models import Line, LineStatus, Plan, UsageEvent
from tests import factories
from tests.helpers import side_by_side

HEADER = "event_id,msisdn,kind,occurred_at\n"


@pytest.fixture(params=[False, True], ids=["in-process", "reader-process"], autouse=True)
def parallel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every import of this module runs both ways: read here, and read by a forked reader process (as a file
    of 4 MiB or more is)."""
    real = importer.import_activity
    monkeypatch.setattr(
        "tests.keepalive.test_import.import_activity",
        lambda *args, **kwargs: real(*args, parallel=request.param, **kwargs),
    )
    return bool(request.param)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _lines(engine: Engine, settings: Settings, count: int) -> list[tuple[int, str]]:
    """``count`` live lines last active at T0: (line id, number)."""
    with Session(engine) as db:
        holders = [factories.holder(db, settings) for _ in range(count)]
        for h in holders:
            h.line.activated_at = h.line.last_activity_at = T0
        db.commit()
        return [(h.line.id, h.msisdn) for h in holders]


def _recycled_number(engine: Engine, settings: Settings) -> str:
    """The number of a recycled line."""
    with Session(engine) as db:
        recycled = factories.holder(db, settings)
        recycled.line.status = LineStatus.RECYCLED
        db.commit()
        return recycled.msisdn


def _events(engine: Engine) -> dict[str, tuple[int, str, datetime, bool]]:
    """Every stored event by id: (line id, kind, occurred_at, counted)."""
    with Session(engine) as db:
        rows = db.execute(
            select(
                UsageEvent.event_id,
                UsageEvent.line_id,
                UsageEvent.kind,
                UsageEvent.occurred_at,
                UsageEvent.counted,
            )
        ).all()
    return {r[0]: (r[1], str(r[2].value), r[3], r[4]) for r in rows}


def _clocks(engine: Engine, line_ids: list[int]) -> list[datetime | None]:
    with Session(engine) as db:
        return [db.get(Line, i).last_activity_at for i in line_ids]  # type: ignore[union-attr]


def _outcomes(
    engine: Engine, settings: Settings, path: Path, lines: list[tuple[int, str]], runs: list[dict[str, int]]
) -> list[tuple[tuple[int, int, int, list[int]], dict[str, Any], list[datetime | None]]]:
    """Import ``path`` once per keyword set of ``runs``, each time with no event stored and ``lines`` last
    active at T0: each run's counts (imported, present, rejected, the lines of the errors), the events
    stored and the clocks of ``lines``."""
    outcomes = []
    for kwargs in runs:
        with Session(engine) as db:
            db.query(UsageEvent).delete()
            for line_id, _ in lines:
                line = db.get(Line, line_id)
                assert line is not None
                line.last_activity_at = T0
            db.commit()
        result = import_activity(engine, settings, path, **kwargs)
        counts = (result.imported, result.already_present, result.rejected, [e.line for e in result.errors])
        outcomes.append((counts, _events(engine), _clocks(engine, [i for i, _ in lines])))
    return outcomes


def _at(hours: int) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def _fail_at_call(
    monkeypatch: pytest.MonkeyPatch, method: str, call: int, check: Callable[[Any], None] | None = None
) -> None:
    """Make ``ActivityWriter.<method>`` raise ``OSError("... (injected)")`` at its ``call``-th call, after
    ``check(writer)``; the other calls run it."""
    real = getattr(importer.ActivityWriter, method)
    calls = [0]

    def failing(self: importer.ActivityWriter, *args: Any) -> Any:
        calls[0] += 1
        if calls[0] == call:
            if check is not None:
                check(self)
            msg = f"{method} failed (injected)"
            raise OSError(msg)
        return real(self, *args)

    monkeypatch.setattr(importer.ActivityWriter, method, failing)


def _import_one(engine: Engine, settings: Settings, folder: Path, event: tuple[str, str, str, int]) -> int:
    """Import one event ``(id, number, kind, hours after T0)`` from a file of its own; how many were
    imported."""
    event_id, msisdn, kind, hours = event
    path = folder / f"one-{event_id}.csv"
    path.write_text(HEADER + f"{event_id},{msisdn},{kind},{_at(hours)}\n")
    return import_activity(engine, settings, path).imported


def _streams(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each stream of events that ends (PostgreSQL) was copied straight (True) or, an event proving
    stored already, inserted again skipping the stored ones (False)."""
    outcomes: list[bool] = []
    real_end = importer.ActivityWriter._end_stream

    def end(self: importer.ActivityWriter) -> None:
        stream = self._stream
        real_end(self)
        if stream is not None:
            outcomes.append(stream.failed is None)

    monkeypatch.setattr(importer.ActivityWriter, "_end_stream", end)
    return outcomes


class TestBatches:
    """A file read in many batches."""

    def test_bad_lines_in_several_batches_are_reported_by_line_number(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """Each bad line is reported with its own line number and reason; every good line is stored."""
        engine, settings = fresh
        (first, a), (_, b) = _lines(engine, settings, 2)
        gone = _recycled_number(engine, settings)
        body = [
            f"g1,{a},sms,{_at(1)}",  # line 2
            f"g2,{b},data,{_at(2)}",
            f",{a},sms,{_at(3)}",  # line 4: no event id
            f"{'x' * 81},{a},sms,{_at(3)}",  # line 5: event id too long
            f"g3,12345,sms,{_at(3)}",  # line 6: not E.164
            f"g4,+8613999999999,sms,{_at(3)}",  # line 7: no such line
            f"g5,{gone},sms,{_at(3)}",  # line 8: recycled
            f"g6,{a},fax,{_at(3)}",  # line 9: bad kind
            f"g7,{a},sms,yesterday",  # line 10: not a timestamp
            f"g8,{a},sms,2026-01-02T00:00:00",  # line 11: no time zone
            f"g9,{a},sms,2099-01-01T00:00:00Z",  # line 12: in the future
            f"g10,{a},sms",  # line 13: three fields
            f"g11,{b},voice,{_at(5)}",  # line 14
        ]
        path = tmp_path / "mixed.csv"
        path.write_text(HEADER + "\n".join(body) + "\n")
        result = import_activity(engine, settings, path, batch_rows=3)
        assert (result.rows, result.imported, result.already_present, result.rejected) == (13, 3, 0, 10)
        assert [(e.line, e.field) for e in result.errors] == [
            (4, "event_id"), (5, "event_id"), (6, "msisdn"), (7, "msisdn"), (8, "msisdn"), (9, "kind"),
            (10, "occurred_at"), (11, "occurred_at"), (12, "occurred_at"), (13, "row"),
        ]  # fmt: skip
        assert sorted(_events(engine)) == ["g1", "g11", "g2"]
        assert _clocks(engine, [first]) == [T0 + timedelta(hours=1)]

    def test_same_outcome_whatever_the_batch_size(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """Batches of one line, of three and of the whole file store the same events and move the same
        clocks (a batch takes the column-wise checks, or the line-by-line ones when it holds a bad line)."""
        engine, settings = fresh
        lines = _lines(engine, settings, 3)
        rows = []
        for i in range(30):
            _, msisdn = lines[i % 3]
            rows.append(f"r{i},{msisdn},{('sms', 'data', 'voice')[i % 3]},{_at((i * 7) % 40)}")
        rows.insert(11, "bad,+86,sms,2026-01-01T00:00:00Z")
        path = tmp_path / "events.csv"
        path.write_text(HEADER + "\n".join(rows) + "\n")
        outcomes = _outcomes(engine, settings, path, lines, [{"batch_rows": n} for n in (1, 3, 1000)])
        assert outcomes[0] == outcomes[1] == outcomes[2]
        assert outcomes[0][0] == (30, 0, 1, [13])
        newest = [max((i * 7) % 40 for i in range(30) if i % 3 == n) for n in range(3)]
        assert outcomes[0][2] == [T0 + timedelta(hours=h) for h in newest]

    def test_a_later_batch_with_older_events_never_moves_a_clock_back(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """The newest event of an earlier batch stays the line's clock when later batches hold older ones."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        path = tmp_path / "late.csv"
        path.write_text(
            HEADER + f"n1,{msisdn},sms,{_at(50)}\nn2,{msisdn},sms,{_at(10)}\nn3,{msisdn},data,{_at(20)}\n"
        )
        assert import_activity(engine, settings, path, batch_rows=1).imported == 3
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=50)]

    def test_duplicates_across_batches_and_runs(self, fresh: tuple[Engine, Settings], tmp_path: Path) -> None:
        """An id seen in an earlier batch or run is counted as already present and moves nothing."""
        engine, settings = fresh
        (one, a), (two, b) = _lines(engine, settings, 2)
        path = tmp_path / "dups.csv"
        path.write_text(HEADER + f"d1,{a},sms,{_at(1)}\nd2,{b},sms,{_at(2)}\nd1,{b},sms,{_at(90)}\n")
        result = import_activity(engine, settings, path, batch_rows=2)
        assert (result.imported, result.already_present) == (2, 1)
        again = import_activity(engine, settings, path, batch_rows=2)
        assert (again.imported, again.already_present, again.rejected) == (0, 3, 0)
        assert _events(engine)["d1"][0] == one
        assert _clocks(engine, [one, two]) == [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]

    def test_an_event_stored_before_amid_new_ones(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch holding, among new events, one that an earlier run stored: the new ones are imported and
        move the clocks, the old one is counted as present and moves nothing. On PostgreSQL a transaction's
        clean batches are copied straight into the events table as one stream; this one's copy fails on the
        stored event, leaves nothing behind, and the batch is inserted skipping it."""
        engine, settings = fresh
        (one, a), (two, b) = _lines(engine, settings, 2)
        copies = _streams(monkeypatch)
        assert _import_one(engine, settings, tmp_path, ("m2", b, "sms", 9)) == 1
        second = tmp_path / "second.csv"
        second.write_text(
            HEADER + f"m1,{a},sms,{_at(1)}\nm2,{b},sms,{_at(9)}\nm3,{b},data,{_at(3)}\nm4,{a},sms,{_at(4)}\n"
        )
        result = import_activity(engine, settings, second)
        assert (result.imported, result.already_present, result.rejected) == (3, 1, 0)
        assert sorted(_events(engine)) == ["m1", "m2", "m3", "m4"]
        assert _clocks(engine, [one, two]) == [T0 + timedelta(hours=4), T0 + timedelta(hours=9)]
        assert copies == ([True, False] if engine.dialect.name == "postgresql" else [])

    def test_a_stored_event_in_a_later_piece_of_the_copy(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """PostgreSQL sends a batch's events in pieces: a stored event in the third of four pieces fails the
        straight copy, and the batch, the pieces not sent yet included, is inserted skipping it."""
        engine, settings = fresh
        (one, a), (two, b) = _lines(engine, settings, 2)
        monkeypatch.setattr(importer, "_COPY_CHUNK_ROWS", 2)
        first = tmp_path / "first.csv"
        first.write_text(HEADER + f"p5,{b},sms,{_at(2)}\n")
        assert import_activity(engine, settings, first).imported == 1
        second = tmp_path / "second.csv"
        second.write_text(
            HEADER + "".join(f"p{i},{(a, b)[i % 2]},sms,{_at(i if i != 5 else 99)}\n" for i in range(7))
        )
        result = import_activity(engine, settings, second)
        assert (result.imported, result.already_present, result.rejected) == (6, 1, 0)
        assert sorted(_events(engine)) == [f"p{i}" for i in range(7)]
        assert _events(engine)["p5"][2] == T0 + timedelta(hours=2)
        assert _clocks(engine, [one, two]) == [T0 + timedelta(hours=6), T0 + timedelta(hours=3)]

    def test_times_are_stored_to_the_microsecond_in_utc(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """A clean batch (on PostgreSQL sent in COPY's binary format) stores each event's time exactly, zones
        and fractions of a second included, and the time it was received."""
        engine, settings = fresh
        (one, a), (two, b) = _lines(engine, settings, 2)
        path = tmp_path / "times.csv"
        path.write_text(
            HEADER + f"u1,{a},sms,2026-01-01T08:00:00.123456+08:00\n"
            f"u2,{b},data,2026-01-01T00:00:01Z\nu3,{a},topup,2025-12-31T23:59:59.999999-05:30\n"
            f"u4,{b},sms,1999-12-31T23:59:59.5Z\nu5,{b},sms,2024-02-29T12:00:00+14:00\n"
        )
        before = datetime.now(UTC)
        assert import_activity(engine, settings, path).imported == 5
        after = datetime.now(UTC)
        events = _events(engine)
        occurred = {k: v[2].replace(tzinfo=UTC) if v[2].tzinfo is None else v[2] for k, v in events.items()}
        assert occurred == {
            "u1": datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
            "u2": datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
            "u3": datetime(2026, 1, 1, 5, 29, 59, 999999, tzinfo=UTC),
            "u4": datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),  # before PostgreSQL's epoch
            "u5": datetime(2024, 2, 28, 22, 0, 0, tzinfo=UTC),  # a leap day, fourteen hours ahead
        }
        assert {v[1] for v in events.values()} == {"sms", "data", "topup"}
        with Session(engine) as db:
            received = db.scalars(select(UsageEvent.received_at)).all()
        assert all(
            before - timedelta(seconds=1) <= r.replace(tzinfo=r.tzinfo or UTC) <= after for r in received
        )
        assert _clocks(engine, [one, two]) == [
            datetime(2026, 1, 1, 5, 29, 59, 999999, tzinfo=UTC),
            datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        ]

    def test_quotes_blank_lines_and_crlf(self, fresh: tuple[Engine, Settings], tmp_path: Path) -> None:
        """Quoted fields, blank lines and CRLF line ends read as the csv module reads them; an unclosed
        quote costs its own line only."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        path = tmp_path / "quoted.csv"
        path.write_bytes(
            (
                HEADER
                + f'"q1","{msisdn}",sms,{_at(3)}\r\n'
                + "\r\n"
                + f'q2,{msisdn},"data",{_at(4)}\r\n'
                + f'"q3,{msisdn},sms,{_at(5)}\r\n'
                + f"q4,{msisdn},voice,{_at(6)}\r\n"
            ).encode()
        )
        result = import_activity(engine, settings, path, batch_rows=2)
        assert (result.rows, result.imported, result.rejected) == (4, 3, 1)
        assert [(e.line, e.field) for e in result.errors] == [(5, "row")]
        assert sorted(_events(engine)) == ["q1", "q2", "q4"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=6)]

    def test_batches_of_blank_lines_only(self, fresh: tuple[Engine, Settings], tmp_path: Path) -> None:
        """Batches holding only blank lines, between and after the others: nothing of them is counted, and
        readers taking batches in turns keep their turns (the next batch comes after them)."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        body = [
            f"e1,{msisdn},sms,{_at(1)}",
            f"e2,{msisdn},sms,{_at(2)}",
            "",
            "",
            "",
            "",
            f"e3,{msisdn},sms,{_at(3)}",
        ]
        path = tmp_path / "blanks.csv"
        path.write_text(HEADER + "\n".join(body) + "\n\n\n")
        seen: list[tuple[int, int]] = []
        result = import_activity(
            engine, settings, path, batch_rows=2, on_progress=lambda n, t: seen.append((n, t))
        )
        assert (result.rows, result.imported, result.rejected) == (3, 3, 0)
        assert seen[-1][0] == 3
        assert sorted(_events(engine)) == ["e1", "e2", "e3"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=3)]

    def test_a_kind_the_plan_does_not_count_is_stored_without_moving_the_clock(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """Counting is per plan, in the column-wise checks too."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        with Session(engine) as db:
            plan = db.scalars(select(Plan)).one()
            plan.counting_kinds = ["topup"]
            db.commit()
        path = tmp_path / "kinds.csv"
        path.write_text(HEADER + f"k1,{msisdn},sms,{_at(9)}\nk2,{msisdn},topup,{_at(4)}\n")
        assert import_activity(engine, settings, path).imported == 2
        assert {k: v[3] for k, v in _events(engine).items()} == {"k1": False, "k2": True}
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=4)]

    def test_json_lines_in_batches(self, fresh: tuple[Engine, Settings], tmp_path: Path) -> None:
        """JSON lines: good objects stored, a non-object or a null field reported by line number."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        good = [
            {"event_id": f"j{i}", "msisdn": msisdn, "kind": "data", "occurred_at": _at(i)} for i in range(4)
        ]
        lines = [
            json.dumps(good[0]),
            json.dumps(good[1]),
            "[1, 2]",
            "",
            json.dumps({**good[2], "msisdn": None}),
        ]
        lines.append(json.dumps(good[3]))
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join(lines) + "\n")
        result = import_activity(engine, settings, path, batch_rows=2)
        assert (result.rows, result.imported, result.rejected) == (5, 3, 2)
        assert [(e.line, e.field) for e in result.errors] == [(3, "row"), (5, "msisdn")]
        assert sorted(_events(engine)) == ["j0", "j1", "j3"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=3)]

    def test_json_values_holding_a_newline_are_refused(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """A JSON value may hold a newline, which the columns sent by the reader use between values: each such
        line is reported in its field, and the good lines of the same batch are stored as usual."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        rows = [
            {"event_id": "n1", "msisdn": msisdn, "kind": "data", "occurred_at": _at(1)},
            {"event_id": "n2", "msisdn": msisdn + "\n", "kind": "data", "occurred_at": _at(2)},
            {"event_id": "n3\nx", "msisdn": msisdn, "kind": "data", "occurred_at": _at(3)},
            {"event_id": "n4", "msisdn": msisdn, "kind": "data", "occurred_at": _at(4) + "\n"},
            {"event_id": "n5", "msisdn": msisdn, "kind": "sms", "occurred_at": _at(5)},
        ]
        path = tmp_path / "newlines.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        result = import_activity(engine, settings, path)
        assert (result.rows, result.imported, result.rejected) == (5, 2, 3)
        refused = [(e.line, e.field) for e in result.errors]
        assert refused == [(2, "msisdn"), (3, "event_id"), (4, "occurred_at")]
        assert sorted(_events(engine)) == ["n1", "n5"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=5)]

    def test_progress_is_reported_per_batch_in_order(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """The progress callback sees the rows read so far, batch by batch, up to the file's lines."""
        engine, settings = fresh
        [(_, msisdn)] = _lines(engine, settings, 1)
        path = tmp_path / "progress.csv"
        path.write_text(HEADER + "".join(f"p{i},{msisdn},sms,{_at(i)}\n" for i in range(7)))
        seen: list[tuple[int, int]] = []
        import_activity(engine, settings, path, batch_rows=3, on_progress=lambda n, t: seen.append((n, t)))
        assert seen == [(3, 7), (6, 7), (7, 7)]

    @pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
    def test_a_big_files_first_batches_are_smaller(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
    ) -> None:
        """Batches of at least ``_RAMP_MIN_ROWS`` start at an eighth, a quarter and a half of their size, in
        file order whichever reader reads them; every event is stored once and the clock is the newest."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        monkeypatch.setattr(importer, "_RAMP_MIN_ROWS", 8)
        events = [(f"r{i}", msisdn, "sms", _at(i)) for i in range(30)]
        path = tmp_path / f"ramp{suffix}"
        if suffix == ".csv":
            path.write_text(HEADER + "".join(",".join(e) + "\n" for e in events))
        else:
            keys = ("event_id", "msisdn", "kind", "occurred_at")
            path.write_text("".join(json.dumps(dict(zip(keys, e, strict=True))) + "\n" for e in events))
        seen: list[int] = []
        result = import_activity(
            engine, settings, path, batch_rows=8, on_progress=lambda n, _t: seen.append(n)
        )
        assert seen == [1, 3, 7, 15, 23, 30]  # batches of 1, 2, 4, 8, 8 and the last 7
        assert (result.imported, result.rejected) == (30, 0)
        assert sorted(_events(engine)) == sorted(e[0] for e in events)
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=29)]
        assert [importer._batch_limit(n, 80_000) for n in range(5)] == [
            10_000,
            20_000,
            40_000,
            80_000,
            80_000,
        ]
        assert [importer._batch_limit(n, 7) for n in range(3)] == [7, 7, 7]


class TestCheckedByTheDatabase:
    """Batches whose every line passes the checks that need no database (on SQLite staged by the reader and
    checked and inserted in SQL): numbers without a line or with a recycled one, plans that count different
    kinds, and JSON values that are not text."""

    def test_numbers_without_a_line_or_recycled_are_reported_by_line_number(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each event of a number without a line or with a recycled line is reported on its own line, with
        the API's message; the other events of the same batch are stored and move their clocks; whatever the
        batch size."""
        engine, settings = fresh
        (first, a), (second, b) = _lines(engine, settings, 2)
        gone = _recycled_number(engine, settings)
        unknown = "+8613999999999"
        body = [
            f"u1,{a},sms,{_at(1)}",  # line 2
            f"u2,{unknown},sms,{_at(2)}",  # line 3: no such line
            f"u3,{b},data,{_at(3)}",
            f"u4,{gone},sms,{_at(4)}",  # line 5: recycled
            f"u5,{unknown},voice,{_at(5)}",  # line 6: no such line
            f"u6,{a},voice,{_at(6)}",
        ]
        path = tmp_path / "unknown.csv"
        path.write_text(HEADER + "\n".join(body) + "\n")
        staged = _count_staged(monkeypatch)
        for batch_rows in (2, 1000):
            with Session(engine) as db:
                db.query(UsageEvent).delete()
                db.commit()
            staged.clear()
            result = import_activity(engine, settings, path, batch_rows=batch_rows)
            assert (result.rows, result.imported, result.already_present, result.rejected) == (6, 3, 0, 3)
            assert [(e.line, e.field, e.reason) for e in result.errors] == [
                (3, "msisdn", "no line has this number"),
                (5, "msisdn", "the number was recycled"),
                (6, "msisdn", "no line has this number"),
            ]
            assert sorted(_events(engine)) == ["u1", "u3", "u6"]
            assert _clocks(engine, [first, second]) == [T0 + timedelta(hours=6), T0 + timedelta(hours=3)]
            assert len(staged) == (-(-6 // batch_rows) if engine.dialect.name == "sqlite" else 0)

    def test_json_lines_with_blank_lines_number_errors_by_file_line(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """JSON lines skip blank lines, so a batch's events are not on consecutive lines: an event of a
        number without a line is still reported on its own file line."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        rows = [
            {"event_id": "b1", "msisdn": msisdn, "kind": "sms", "occurred_at": _at(1)},
            None,
            None,
            {"event_id": "b2", "msisdn": "+8613999999999", "kind": "sms", "occurred_at": _at(2)},
            None,
            {"event_id": "b3", "msisdn": msisdn, "kind": "data", "occurred_at": _at(3)},
        ]
        path = tmp_path / "blank.jsonl"
        path.write_text("".join("\n" if row is None else json.dumps(row) + "\n" for row in rows))
        result = import_activity(engine, settings, path)
        assert (result.rows, result.imported, result.rejected) == (3, 2, 1)
        assert [(e.line, e.field) for e in result.errors] == [(4, "msisdn")]
        assert sorted(_events(engine)) == ["b1", "b3"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=3)]

    def test_lines_on_plans_counting_different_kinds_in_one_batch(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """One batch over two plans: each event counts by its own line's plan, and each clock moves to its
        line's newest counting event."""
        engine, settings = fresh
        (one, a), (two, b) = _lines(engine, settings, 2)
        with Session(engine) as db:
            topups = Plan(code="topups", name="Top-ups only", counting_kinds=["topup"])
            db.add(topups)
            db.flush()
            line = db.get(Line, two)
            assert line is not None
            line.plan_id = topups.id
            db.commit()
        body = [
            f"p1,{a},sms,{_at(5)}",
            f"p2,{b},sms,{_at(9)}",  # does not count on the top-ups plan
            f"p3,{b},topup,{_at(4)}",
            f"p4,{a},topup,{_at(2)}",
        ]
        path = tmp_path / "plans.csv"
        path.write_text(HEADER + "\n".join(body) + "\n")
        assert import_activity(engine, settings, path).imported == 4
        assert {k: v[3] for k, v in _events(engine).items()} == {
            "p1": True,
            "p2": False,
            "p3": True,
            "p4": True,
        }
        assert _clocks(engine, [one, two]) == [T0 + timedelta(hours=5), T0 + timedelta(hours=4)]

    def test_json_values_that_are_not_text_are_reported(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """A list, an object or a number where text belongs is reported in its field (it once stopped the
        import with an unhashable-type error); the good lines of the batch are stored."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        good = {"event_id": "t1", "msisdn": msisdn, "kind": "sms", "occurred_at": _at(1)}
        rows = [
            good,
            {**good, "event_id": ["t2"]},
            {**good, "event_id": "t3", "msisdn": [msisdn]},
            {**good, "event_id": "t4", "kind": {"kind": "sms"}},
            {**good, "event_id": "t5", "occurred_at": [_at(5)]},
            {**good, "event_id": "t6", "msisdn": 8613800138000},
            {**good, "event_id": "t7", "occurred_at": _at(7)},
        ]
        path = tmp_path / "types.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        result = import_activity(engine, settings, path)
        assert (result.rows, result.imported, result.rejected) == (7, 2, 5)
        assert [(e.line, e.field) for e in result.errors] == [
            (2, "event_id"), (3, "msisdn"), (4, "kind"), (5, "occurred_at"), (6, "msisdn"),
        ]  # fmt: skip
        assert sorted(_events(engine)) == ["t1", "t7"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=7)]

    def test_json_strings_holding_a_nul_are_reported(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """A JSON string may hold a NUL (``\\u0000``), which PostgreSQL refuses in any text: such a number, id
        or time is reported in its field (a number holding one once stopped the import on PostgreSQL when the
        batch's numbers were looked up), and the good lines of the batch are stored."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        good = {"event_id": "z1", "msisdn": msisdn, "kind": "sms", "occurred_at": _at(1)}
        rows = [
            good,
            {**good, "event_id": "z2", "msisdn": msisdn + "\x00"},
            {**good, "event_id": "z3\x00"},
            {**good, "event_id": "z4", "occurred_at": _at(4) + "\x00"},
            {**good, "event_id": "z5", "occurred_at": _at(5)},
        ]
        path = tmp_path / "nul.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        result = import_activity(engine, settings, path, batch_rows=2)
        assert (result.rows, result.imported, result.rejected) == (5, 2, 3)
        assert [(e.line, e.field) for e in result.errors] == [
            (2, "msisdn"),
            (3, "event_id"),
            (4, "occurred_at"),
        ]
        assert sorted(_events(engine)) == ["z1", "z5"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=5)]


def _count_staged(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Note each batch written from the reader's staged database (SQLite), by its rows."""
    staged: list[int] = []
    real = importer.ActivityWriter._write_staged

    def write_staged(self: importer.ActivityWriter, prepared: Any, batch: Any) -> Any:
        staged.append(prepared.rows)
        return real(self, prepared, batch)

    monkeypatch.setattr(importer.ActivityWriter, "_write_staged", write_staged)
    return staged


class TestTransactions:
    """On PostgreSQL a transaction takes several batches (``transaction_rows``) and moves each of its lines'
    clocks once, at its commit; SQLite commits every batch."""

    def test_same_outcome_whatever_the_transaction_size(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """Transactions of one batch, of two and of the whole file store the same events, report the same
        rows and move the same clocks, with a bad line and a repeated id among the batches."""
        engine, settings = fresh
        lines = _lines(engine, settings, 3)
        rows = [f"t{i},{lines[i % 3][1]},sms,{_at((i * 11) % 37)}" for i in range(20)]
        rows.insert(7, "bad,+86,sms,2026-01-01T00:00:00Z")
        rows.insert(15, rows[3])  # a repeat, in a later batch
        path = tmp_path / "events.csv"
        path.write_text(HEADER + "\n".join(rows) + "\n")
        runs = [{"batch_rows": 2, "transaction_rows": n} for n in (0, 4, 1000)]
        outcomes = _outcomes(engine, settings, path, lines, runs)
        assert outcomes[0] == outcomes[1] == outcomes[2]
        assert outcomes[0][0] == (20, 1, 1, [9])
        newest = [max((i * 11) % 37 for i in range(20) if i % 3 == n) for n in range(3)]
        assert outcomes[0][2] == [T0 + timedelta(hours=h) for h in newest]

    def test_each_clock_moves_once_per_transaction(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Five batches in transactions of six rows: two moves of the clocks on PostgreSQL (after the third
        batch and at the end), one per batch on SQLite, to the newest event either way."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        moves: list[int] = []
        real_move = importer.ActivityWriter._move

        def move(self: importer.ActivityWriter, *args: Any) -> None:
            moves.append(1)
            real_move(self, *args)

        monkeypatch.setattr(importer.ActivityWriter, "_move", move)
        path = tmp_path / "once.csv"
        path.write_text(HEADER + "".join(f"o{i},{msisdn},sms,{_at(i)}\n" for i in range(1, 11)))
        assert import_activity(engine, settings, path, batch_rows=2, transaction_rows=6).imported == 10
        assert len(moves) == (5 if engine.dialect.name == "sqlite" else 2)
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=10)]

    def test_the_default_transaction_per_database(self, fresh: tuple[Engine, Settings]) -> None:
        engine, _ = fresh
        expected = 0 if engine.dialect.name == "sqlite" else importer.POSTGRES_TRANSACTION_ROWS
        assert importer._transaction_rows(engine) == expected
        assert importer.POSTGRES_TRANSACTION_ROWS >= importer.BATCH_ROWS

    def test_a_repeated_id_in_a_later_batch_moves_the_clocks_of_the_whole_transaction(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """A batch holding an event stored before: the transaction's clocks are found among the events it
        inserted, those of its earlier batches included."""
        engine, settings = fresh
        (one, a), (two, b) = _lines(engine, settings, 2)
        first = tmp_path / "first.csv"
        first.write_text(HEADER + f"x0,{b},sms,{_at(1)}\n")
        assert import_activity(engine, settings, first).imported == 1
        path = tmp_path / "second.csv"
        path.write_text(
            HEADER + f"x1,{a},sms,{_at(5)}\nx2,{a},sms,{_at(3)}\nx0,{b},sms,{_at(99)}\nx3,{b},data,{_at(7)}\n"
        )
        result = import_activity(engine, settings, path, batch_rows=2, transaction_rows=100)
        assert (result.imported, result.already_present) == (3, 1)
        assert _clocks(engine, [one, two]) == [T0 + timedelta(hours=5), T0 + timedelta(hours=7)]

    def test_a_stored_event_in_a_later_batch_of_the_stream(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Three clean batches in one transaction, the second holding an event stored before: on PostgreSQL
        the transaction's stream fails at the end and all its events are inserted again, skipping the stored
        one; the counts and clocks are those of the events stored now, the first batch's included."""
        engine, settings = fresh
        (one, a), (two, b) = _lines(engine, settings, 2)
        streams = _streams(monkeypatch)
        assert _import_one(engine, settings, tmp_path, ("s3", b, "sms", 2)) == 1
        second = tmp_path / "second.csv"
        rows = [(a, 1), (a, 5), (b, 99), (b, 7), (a, 2)]
        second.write_text(HEADER + "".join(f"s{i},{n},sms,{_at(h)}\n" for i, (n, h) in enumerate(rows, 1)))
        seen: list[int] = []
        result = import_activity(
            engine,
            settings,
            second,
            batch_rows=2,
            transaction_rows=100,
            on_progress=lambda n, _t: seen.append(n),
        )
        assert (result.imported, result.already_present, result.rejected) == (4, 1, 0)
        assert seen == [2, 4, 5]
        assert sorted(_events(engine)) == ["s1", "s2", "s3", "s4", "s5"]
        assert _events(engine)["s3"][2] == T0 + timedelta(hours=2)
        assert _clocks(engine, [one, two]) == [T0 + timedelta(hours=5), T0 + timedelta(hours=7)]
        assert streams == ([True, False] if engine.dialect.name == "postgresql" else [])

    def test_a_bad_batch_ends_the_stream_before_it(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A clean batch, one with a bad line, and a clean one, in one transaction: on PostgreSQL the stream
        ends before the bad batch is written on its own and a new one takes the last batch."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        streams = _streams(monkeypatch)
        path = tmp_path / "mixed.csv"
        path.write_text(
            HEADER + f"b1,{msisdn},sms,{_at(1)}\nb2,{msisdn},sms,{_at(2)}\nb3,{msisdn},fax,{_at(3)}\n"
            f"b4,{msisdn},sms,{_at(4)}\nb5,{msisdn},sms,{_at(8)}\nb6,{msisdn},sms,{_at(6)}\n"
        )
        result = import_activity(engine, settings, path, batch_rows=2, transaction_rows=100)
        assert (result.imported, result.already_present, result.rejected) == (5, 0, 1)
        assert [e.line for e in result.errors] == [4]
        assert sorted(_events(engine)) == ["b1", "b2", "b4", "b5", "b6"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=8)]
        assert streams == ([True, True] if engine.dialect.name == "postgresql" else [])


class TestPostgresTriggers:
    """On PostgreSQL the events' insert skips its foreign key trigger, and nothing else does."""

    def test_only_the_events_insert_runs_as_replica(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The lines are updated (and their triggers fire) with the session's own role; afterwards the
        foreign key still refuses an event for a line that does not exist."""
        engine, settings = fresh
        if engine.dialect.name != "postgresql":
            pytest.skip("SQLite turns its foreign key checks off for the import's connection instead")
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        roles: list[str] = []
        real_move = importer.ActivityWriter._move

        def move(self: importer.ActivityWriter, *args: Any) -> None:
            roles.append(str(self.session.execute(text("SHOW session_replication_role")).scalar_one()))
            real_move(self, *args)

        monkeypatch.setattr(importer.ActivityWriter, "_move", move)
        path = tmp_path / "pg.csv"
        path.write_text(HEADER + f"r1,{msisdn},sms,{_at(7)}\n")
        assert import_activity(engine, settings, path).imported == 1
        assert roles == ["origin"]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=7)]
        with engine.connect() as conn, pytest.raises(IntegrityError, match="fk_usage_events_line_id_lines"):
            conn.execute(
                text(
                    "INSERT INTO usage_events (event_id, line_id, kind, occurred_at, counted, received_at) "
                    "VALUES ('orphan', -1, 'sms', now(), true, now())"
                )
            )


class TestFailures:
    """A failure while writing, and imports at the same time."""

    @pytest.mark.parametrize(("batch_rows", "transaction_rows"), [(3, 3), (2, 4)])
    def test_a_failing_batch_stops_the_import_and_keeps_the_transactions_before(
        self,
        fresh: tuple[Engine, Settings],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        batch_rows: int,
        transaction_rows: int,
    ) -> None:
        """The second move of clocks fails: the error reaches the caller; the transactions committed before
        it stay (on PostgreSQL each takes ``transaction_rows``, on SQLite one batch), nothing of the failing
        one or after it is stored, and the clocks are those of the stored events."""
        engine, settings = fresh
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        path = tmp_path / "fails.csv"
        path.write_text(HEADER + "".join(f"f{i},{msisdn},sms,{_at(i)}\n" for i in range(1, 10)))
        _fail_at_call(monkeypatch, "_move", 2)
        with pytest.raises(OSError, match="injected"):
            import_activity(engine, settings, path, batch_rows=batch_rows, transaction_rows=transaction_rows)
        kept = batch_rows if engine.dialect.name == "sqlite" else transaction_rows
        assert sorted(_events(engine)) == [f"f{i}" for i in range(1, kept + 1)]
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=kept)]

    def test_a_failure_while_a_stream_is_open_leaves_nothing_and_the_database_usable(
        self, fresh: tuple[Engine, Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """PostgreSQL: the second batch of a transaction fails while the first batch's events are being
        copied; the copy is dropped, nothing of the transaction is stored, the connections are usable, and
        the file imported again stores everything."""
        engine, settings = fresh
        if engine.dialect.name != "postgresql":
            pytest.skip("the stream of events is PostgreSQL's")
        [(line_id, msisdn)] = _lines(engine, settings, 1)
        path = tmp_path / "stops.csv"
        path.write_text(HEADER + "".join(f"x{i},{msisdn},sms,{_at(i)}\n" for i in range(1, 7)))
        real_check = importer.ActivityWriter._check_fast

        def open_stream(writer: importer.ActivityWriter) -> None:
            assert writer._stream is not None  # the first batch's copy is open

        _fail_at_call(monkeypatch, "_check_fast", 2, open_stream)
        with pytest.raises(OSError, match="injected"):
            import_activity(engine, settings, path, batch_rows=2)
        assert _events(engine) == {}
        assert _clocks(engine, [line_id]) == [T0]
        monkeypatch.setattr(importer.ActivityWriter, "_check_fast", real_check)
        assert import_activity(engine, settings, path, batch_rows=2).imported == 6
        assert _clocks(engine, [line_id]) == [T0 + timedelta(hours=6)]

    def test_two_imports_of_one_file_at_once_store_each_event_once(
        self, fresh: tuple[Engine, Settings], tmp_path: Path
    ) -> None:
        """Run side by side, the two imports together store every event exactly once."""
        engine, settings = fresh
        lines = _lines(engine, settings, 4)
        path = tmp_path / "twice.csv"
        path.write_text(HEADER + "".join(f"c{i},{lines[i % 4][1]},sms,{_at(i % 50)}\n" for i in range(400)))
        results = side_by_side(*[partial(import_activity, engine, settings, path, batch_rows=50)] * 2)
        assert len(results) == 2
        assert sum(r.imported for r in results) == 400
        assert sum(r.already_present for r in results) == 400
        assert len(_events(engine)) == 400
        newest = [max(i % 50 for i in range(400) if i % 4 == n) for n in range(4)]
        assert _clocks(engine, [i for i, _ in lines]) == [T0 + timedelta(hours=h) for h in newest]
