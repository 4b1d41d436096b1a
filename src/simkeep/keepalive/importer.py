"""Usage events from a file (``simkeep keepalive import-activity``): CSV or JSON lines, streamed in batches.

CSV files have the header ``event_id,msisdn,kind,occurred_at``; JSON lines files (``.jsonl``, ``.ndjson``)
hold one object with the same fields per line. Each batch is one transaction: its events are inserted once
(``ON CONFLICT DO NOTHING`` on the event id: a duplicate, within the file or from an earlier run, is counted
as already present), then the lines whose counting events are newer than their last activity get their
clock moved forward (never back) and their deadline and next sweep time recomputed. Bad lines are reported
with their line numbers and change nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.identifiers import E164
from simkeep.keepalive.service import CLOCK_SKEW, LINES, PlanPolicy, policies
from simkeep.models import LineStatus, UsageKind
from simkeep.sims.importer import (
    ImportFileUnreadable,
    ImportResult,
    RowError,
    check_file,
    record_run,
    records,
)

COLUMNS = ("event_id", "msisdn", "kind", "occurred_at")
BATCH_ROWS = 50_000
_KINDS = frozenset(k.value for k in UsageKind)
_JSON_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
_LOOKUP_CHUNK = 5000

Row = tuple[int, str, str, str, datetime]  # file line, event id, msisdn, kind, occurred_at


def check_values(  # noqa: PLR0911 - one early return per field, in order
    values: list[Any], latest: datetime
) -> tuple[str, str, str, datetime] | tuple[str, str]:
    """One event's fields checked: ``(event_id, msisdn, kind, occurred_at)`` or ``(field, reason)``."""
    event_id, msisdn, kind, occurred = values
    if not isinstance(event_id, str) or not event_id or len(event_id) > 80 or not event_id.isprintable():
        return "event_id", "required, 1 to 80 printable characters"
    if not isinstance(msisdn, str) or not E164.match(msisdn):
        return "msisdn", "an E.164 number like +8613800138000"
    if kind not in _KINDS:
        return "kind", "one of " + ", ".join(sorted(_KINDS))
    if not isinstance(occurred, str):
        return "occurred_at", "required"
    try:
        stamp = datetime.fromisoformat(occurred)
    except ValueError:
        return "occurred_at", "not an ISO 8601 timestamp (like 2024-05-01T08:30:00+08:00)"
    if stamp.tzinfo is None:
        return "occurred_at", "needs a time zone (Z or +08:00)"
    stamp = stamp.astimezone(UTC)
    if stamp > latest:
        return "occurred_at", "is in the future"
    return event_id, msisdn, kind, stamp


def _json_records(path: Path) -> Iterator[tuple[int, list[Any] | str]]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                yield number, "not a JSON object"
                continue
            if not isinstance(obj, dict):
                yield number, "not a JSON object"
                continue
            yield number, [obj.get(name) for name in COLUMNS]


def _check_json_file(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            data_lines = 0
            for raw in handle:
                raw.decode("utf-8")
                data_lines += 1
    except OSError as exc:
        raise ImportFileUnreadable(f"cannot open {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ImportFileUnreadable(f"line {data_lines + 1}: the file is not UTF-8 text") from None
    return data_lines


def checked_batches(
    path: Path, *, batch_rows: int = BATCH_ROWS
) -> Iterator[tuple[int, list[Row], list[RowError]]]:
    """Batches of ``(rows read, good events, errors)``."""
    latest = utcnow() + CLOCK_SKEW
    source = _json_records(path) if path.suffix.lower() in _JSON_SUFFIXES else records(path, len(COLUMNS))
    good: list[Row] = []
    errors: list[RowError] = []
    count = 0
    for line_no, raw in source:
        count += 1
        if isinstance(raw, str):
            errors.append(RowError(line_no, "row", raw))
        else:
            checked = check_values(raw, latest)
            if len(checked) == 2:
                errors.append(RowError(line_no, str(checked[0]), str(checked[1])))
            else:
                good.append((line_no, *checked))
        if count >= batch_rows:
            yield count, good, errors
            good, errors, count = [], [], 0
    if count:
        yield count, good, errors


def _sqlite_time(value: datetime) -> str:
    return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class ActivityWriter:
    """Writes one batch of events and moves the clocks of their lines, in one transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.plans: dict[int, PlanPolicy] = policies(session)
        session.rollback()

    def write(self, rows: list[Row]) -> tuple[int, int, list[RowError]]:
        """Insert one batch; return (imported, already present, errors)."""
        session, now = self.session, utcnow()
        found: dict[str, Any] = {}
        numbers = list({r[2] for r in rows})
        for start in range(0, len(numbers), _LOOKUP_CHUNK):
            stmt = select(
                LINES.c.msisdn, LINES.c.id, LINES.c.plan_id, LINES.c.status,
                LINES.c.last_activity_at, LINES.c.activated_at,
            ).where(LINES.c.msisdn.in_(numbers[start : start + _LOOKUP_CHUNK]))  # fmt: skip
            found.update((r.msisdn, r) for r in session.execute(stmt))
        errors: list[RowError] = []
        events: list[tuple[str, int, str, datetime, bool]] = []
        seen: set[str] = set()
        for line_no, event_id, msisdn, kind, stamp in rows:
            line = found.get(msisdn)
            if line is None:
                errors.append(RowError(line_no, "msisdn", "no line has this number"))
            elif line.status == LineStatus.RECYCLED.value:
                errors.append(RowError(line_no, "msisdn", "the number was recycled"))
            elif event_id not in seen:
                seen.add(event_id)
                events.append((event_id, line.id, kind, stamp, kind in self.plans[line.plan_id].counting))
        imported, inserted = self._insert(events, now) if events else (0, [])
        newest: dict[int, datetime] = {}
        for line_id, stamp in inserted:
            if stamp > newest.get(line_id, stamp - CLOCK_SKEW):
                newest[line_id] = stamp
        by_id = {r.id: r for r in found.values()}
        moves = []
        for line_id, stamp in newest.items():
            line = by_id[line_id]
            if stamp > (line.last_activity_at or line.activated_at):
                moves.append((line_id, stamp, *self.plans[line.plan_id].calendar(stamp, now)))
        self._move(moves)
        session.commit()
        return imported, len(rows) - len(errors) - imported, errors

    def _insert(
        self, events: list[tuple[str, int, str, datetime, bool]], now: datetime
    ) -> tuple[int, list[tuple[int, datetime]]]:
        """Insert the events; how many were new, and ``(line id, occurred_at)`` of the new counting ones."""
        if self.postgres:
            result = self.session.execute(
                text(
                    "INSERT INTO usage_events (event_id, line_id, kind, occurred_at, counted, received_at) "
                    "SELECT e, l, k, o, c, :now FROM unnest(CAST(:e AS text[]), CAST(:l AS integer[]), "
                    "CAST(:k AS text[]), CAST(:o AS timestamptz[]), CAST(:c AS boolean[])) "
                    "AS v(e, l, k, o, c) "
                    "ON CONFLICT (event_id) DO NOTHING RETURNING line_id, occurred_at, counted"
                ),
                {"now": now, "e": [e[0] for e in events], "l": [e[1] for e in events],
                 "k": [e[2] for e in events], "o": [e[3] for e in events], "c": [e[4] for e in events]},
            ).all()  # fmt: skip
            return len(result), [(lid, o) for lid, o, c in result if c]
        payload = json.dumps([[e[0], e[1], e[2], _sqlite_time(e[3]), int(e[4])] for e in events])
        result = self.session.execute(
            text(
                "INSERT INTO usage_events (event_id, line_id, kind, occurred_at, counted, received_at) "
                "SELECT value->>0, value->>1, value->>2, value->>3, value->>4, :now "
                "FROM json_each(:p) WHERE true "
                "ON CONFLICT (event_id) DO NOTHING RETURNING line_id, occurred_at, counted"
            ),
            {"now": _sqlite_time(now), "p": payload},
        ).all()
        return len(result), [
            (lid, datetime.fromisoformat(o).replace(tzinfo=UTC)) for lid, o, c in result if c
        ]

    def _move(self, moves: list[tuple[int, datetime, datetime, datetime]]) -> None:
        """Move line clocks forward only (a concurrent newer activity wins)."""
        if not moves:
            return
        if self.postgres:
            self.session.execute(
                text(
                    "UPDATE lines SET last_activity_at = v.a, deadline_at = v.d, next_action_at = v.n, "
                    "updated_at = now() FROM unnest(CAST(:i AS integer[]), CAST(:a AS timestamptz[]), "
                    "CAST(:d AS timestamptz[]), CAST(:n AS timestamptz[])) AS v(i, a, d, n) "
                    "WHERE lines.id = v.i "
                    "AND (lines.last_activity_at IS NULL OR lines.last_activity_at < v.a)"
                ),
                {"i": [m[0] for m in moves], "a": [m[1] for m in moves],
                 "d": [m[2] for m in moves], "n": [m[3] for m in moves]},
            )  # fmt: skip
            return
        self.session.execute(
            text(
                "UPDATE lines SET last_activity_at = :a, deadline_at = :d, next_action_at = :n "
                "WHERE id = :i AND (last_activity_at IS NULL OR last_activity_at < :a)"
            ),
            [
                {"i": i, "a": _sqlite_time(a), "d": _sqlite_time(d), "n": _sqlite_time(n)}
                for i, a, d, n in moves
            ],
        )


def import_activity(
    engine: Engine,
    settings: Settings,  # noqa: ARG001 - the importers share one signature
    path: Path,
    *,
    actor: str = "cli",
    batch_rows: int = BATCH_ROWS,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import usage events from ``path``; raises :class:`ImportFileUnreadable` before writing anything."""
    started = time.perf_counter()
    total = _check_json_file(path) if path.suffix.lower() in _JSON_SUFFIXES else check_file(path, COLUMNS)
    result = ImportResult(file=str(path))
    with Session(engine) as session:
        writer = ActivityWriter(session)
        for rows, good, errors in checked_batches(path, batch_rows=batch_rows):
            imported, present, more = writer.write(good) if good else (0, 0, [])
            result.rows += rows
            result.imported += imported
            result.already_present += present
            result.add_errors(errors)
            result.add_errors(more)
            if on_progress is not None:
                on_progress(result.rows, total)
    result.seconds = time.perf_counter() - started
    record_run(engine, actor=actor, action="keepalive.activity_imported", result=result)
    return result
