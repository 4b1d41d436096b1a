"""Usage events from a file (``simkeep keepalive import-activity``): CSV or JSON lines, streamed in batches.

CSV files have the header ``event_id,msisdn,kind,occurred_at``; JSON lines files (``.jsonl``, ``.ndjson``)
hold one object with the same fields per line. Bad lines are reported with their line numbers and change
nothing; the rest is imported.

Built for throughput (figures: ``bench/activity_import.py``):

- **Parsing in bulk.** The CSV is read in chunks of a few MiB and split into lines and fields with ``str``
  methods mapped over the batch in C; only a batch holding a quote, a blank line or a wrong field count goes
  line by line, and only a line holding a quote goes through the ``csv`` module (alone, so an unclosed quote
  costs that line only). Python's cyclic garbage collector is paused during the import (a batch is a
  million short-lived lists; its collections cost more than the parsing).
- **Checking by column.** A batch is checked column by column, each distinct number and timestamp once
  (they repeat); only a batch with a bad row is checked row by row, to report each bad line.
- **Reading beside writing.** A file of 4 MiB or more is read, split and checked (every check that needs
  no database) by two forked reader processes taking the batches in turns (:func:`in_turns`), each
  sending its batches down its own pipe while this process writes the batch before: the writer's core
  then only looks lines up and writes. On SQLite the reader stages a
  batch in a small database of its own (its events, and its distinct numbers with each one's newest event;
  :class:`Staged`), which the writer attaches and inserts from in SQL, with no Python step per event; on
  PostgreSQL it sends the batch's columns, each joined into one string (a few strings, not a million
  pickled objects). (Threads would not do: the driver gives the GIL up and takes it back for every row it
  inserts, so a reading thread starves the writer; measured, a writer thread gained nothing.) Batches are
  written in file order, one at a time; the pipe holds about one, so memory stays flat.
- **Set-based writing, one transaction per batch.** On SQLite the connection gets a large page cache and
  skips the per-row foreign key re-check (the batch finds its lines under the write lock that inserts the
  events). The batch's numbers are resolved to lines with one query (on SQLite one join of the staged
  numbers into a temporary table, ``ka_found``, which also finds the events of numbers without a live line,
  reported by line number); the events are inserted with ``ON CONFLICT (event_id) DO NOTHING`` (on SQLite
  one ``INSERT ... SELECT`` from the staged events joined to ``ka_found``; on PostgreSQL a COPY straight
  into ``usage_events`` in a savepoint, and only when that copy meets a stored event, a COPY into a
  temporary table then ``INSERT ... SELECT``): a duplicate, within the file or from an earlier run, is
  counted as already present and never moves a clock. Each line's newest counting event of the batch
  (noted while checking, or, when the batch held duplicates, taken in SQL from the events it did insert) goes
  into a temporary table; one ``UPDATE`` moves those lines' ``since`` in ``line_calendar``, keeping their
  next sweep time (which can only have become early: the sweep corrects it when it comes), per plan one
  upsert writes the whole calendar of lines that had none yet, and one ``UPDATE ... FROM`` moves their
  clocks forward (never back) with their deadline, computed in SQL as the API computes them.
- A batch holding a bad line (or a value that is not text, in JSON lines) is checked line by line, in
  Python, on either database, so that each bad line is reported with its own reason.
"""

# ruff: noqa: S608 - SQL text is assembled from constants and the plans' integers; values are bound parameters.
from __future__ import annotations

import csv
import json
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import filterfalse, islice, repeat
from pathlib import Path
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.identifiers import E164
from simkeep.keepalive.batch import Dialect, first_action, stamps, thresholds
from simkeep.keepalive.service import CLOCK_SKEW, PlanPolicy, parse_time, policies
from simkeep.models import LineStatus, UsageKind
from simkeep.sims.importer import (
    READERS,
    SQLITE_STAGE_SCHEMA,
    UNCLOSED_QUOTE,
    ImportFileUnreadable,
    ImportResult,
    RowError,
    bulk_connection,
    check_file,
    copy_text,
    driver,
    gc_paused,
    in_turns,
    reads_in_parallel,
    record_run,
    sqlite_stage,
    staged_database,
)

COLUMNS = ("event_id", "msisdn", "kind", "occurred_at")
BATCH_ROWS = 200_000
#: PostgreSQL: the events a transaction takes (whole batches) before it commits. Each transaction moves each
#: of its lines' clocks once, at its end: an update of the line's row and of its calendar row, which costs
#: the server more than inserting its events when the export has a few events per line and batch. SQLite
#: commits every batch: its one writer's lock would keep the service's other writers out meanwhile.
POSTGRES_TRANSACTION_ROWS = 1_000_000
_KINDS = frozenset(k.value for k in UsageKind)
_JSON_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
_CHUNK_CHARS = 4 << 20
_CACHE_MAX = 500_000  # distinct timestamps remembered between batches

E_EVENT_ID = ("event_id", "required, 1 to 80 printable characters")
E_MSISDN = ("msisdn", "an E.164 number like +8613800138000")
E_KIND = ("kind", "one of " + ", ".join(sorted(_KINDS)))
E_REQUIRED = ("occurred_at", "required")
E_STAMP = ("occurred_at", "not an ISO 8601 timestamp (like 2024-05-01T08:30:00+08:00)")
E_NAIVE = ("occurred_at", "needs a time zone (Z or +08:00)")
E_FUTURE = ("occurred_at", "is in the future")
E_NO_LINE = ("msisdn", "no line has this number")
E_RECYCLED = ("msisdn", "the number was recycled")


@dataclass
class RawBatch:
    """One stretch of the file: its rows as read (line number, four values) and the unreadable lines."""

    rows: int = 0
    lines: Sequence[int] = field(default_factory=list)
    values: list[list[Any]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    #: A CSV batch whose every line has four fields and no quote: its values by column, as text (and
    #: ``values`` empty), split from the batch's text in one pass instead of line by line.
    columns: tuple[list[str], list[str], list[str], list[str]] | None = None

    def value_rows(self) -> list[list[Any]]:
        """The batch's rows as read: ``values``, or its columns as rows."""
        if self.columns is None:
            return self.values
        return list(map(list, zip(*self.columns, strict=True)))


class Columns(NamedTuple):
    """A batch's values by column, every line having passed the checks that need no database; ``at`` holds
    the timestamps as the database is given them.

    Each column is its values joined by newlines (no value holds one; :meth:`ActivityWriter.prepare`
    checks), so that a batch crosses the reader's pipe as a few strings: a tuple of strings is pickled and
    unpickled one object per value, which cost the reader more than reading and checking the batch."""

    ids: str
    numbers: str
    kinds: str
    at: str
    #: The kinds the batch holds.
    kinds_present: frozenset[str]
    #: Each number's newest event of the batch (of any kind): the numbers, and the newest ``at`` of each.
    newest_numbers: str
    newest_at: str
    #: Each event's first fields in ``COPY``'s binary format, made by the reader: the row's field count,
    #: then the event id, kind and time (:data:`_BINARY_COLUMNS`); the writer adds the line and the rest.
    prefixes: list[bytes]

    def values(self) -> list[list[Any]]:
        """The batch's rows (event id, number, kind, and the time as ``at`` holds it, which reads as the
        time read)."""
        return list(map(list, zip(*(column.split("\n") for column in self[:4]), strict=True)))


@dataclass
class Staged:
    """SQLite: a batch whose lines passed the checks that need no database, staged by the reader in a small
    database of its own (:func:`staged_database`: the tables :data:`_STAGE_NUMBERS` and
    :data:`_STAGE_EVENTS`), which the writer attaches and inserts from in SQL."""

    payload: bytes
    #: The kinds the batch holds.
    kinds_present: frozenset[str]
    #: How many distinct numbers it holds.
    numbers: int


@dataclass
class Prepared:
    """A batch ready for the writer: when no line is bad, its columns (PostgreSQL; its distinct numbers are
    those of ``newest_numbers``) or its staged database (SQLite); otherwise its distinct numbers that can be
    a line's, its values as read and its unreadable lines."""

    rows: int
    lines: Sequence[int]
    numbers: list[str]
    columns: Columns | None
    values: list[Any] | None
    errors: list[RowError]
    staged: Staged | None = None


# --- reading ----------------------------------------------------------------------------------------------


def _quoted(raw: str) -> list[str] | str:
    """One physical line holding a quote, through the csv module; the reason when it is malformed."""
    try:
        return next(csv.reader([raw]))
    except csv.Error as exc:
        return UNCLOSED_QUOTE if "unexpected end of data" in str(exc) else f"malformed CSV ({exc})"


def _raw_batch(raws: list[str], first: int) -> RawBatch:
    """The rows of physical lines ``raws``, the first being file line ``first``.

    The common case (no quote, no blank line, four fields everywhere) is split with one C-level ``map``;
    anything else goes line by line, with the ``csv`` module for a line holding a quote.
    """
    if raws and set(map(str.count, raws, repeat(","))) == {len(COLUMNS) - 1}:
        text = ",".join(raws)
        if '"' not in text:
            flat = text.split(",")
            columns = (flat[0::4], flat[1::4], flat[2::4], flat[3::4])
            return RawBatch(len(raws), range(first, first + len(raws)), [], [], columns)
    batch = RawBatch(lines=[])
    for line_no, raw in enumerate(raws, start=first):
        if not raw:
            continue  # a blank line
        row: list[str] | str = _quoted(raw) if '"' in raw else raw.split(",")
        batch.rows += 1
        if isinstance(row, str):
            batch.errors.append(RowError(line_no, "row", row))
        elif len(row) != len(COLUMNS):
            reason = f"expected {len(COLUMNS)} fields, found {len(row)}"
            batch.errors.append(RowError(line_no, "row", reason))
        else:
            cast(list[int], batch.lines).append(line_no)
            batch.values.append(row)
    return batch


#: A big file's first batches are smaller: an eighth, a quarter and a half of the batch size. The writer
#: starts on the first while the readers read the next, instead of waiting for a whole batch to be read and
#: checked (0.6 s of 5.7 s for 1,000,000 events on PostgreSQL, measured).
_RAMP = (8, 4, 2)
_RAMP_MIN_ROWS = 80_000  # smaller batch sizes are taken as they are


def _batch_limit(number: int, batch_rows: int) -> int:
    """The rows of batch ``number`` (from 0) of a file read in batches of ``batch_rows``."""
    if batch_rows < _RAMP_MIN_ROWS or number >= len(_RAMP):
        return batch_rows
    return batch_rows // _RAMP[number]


def csv_batches(
    path: Path, *, batch_rows: int = BATCH_ROWS, part: tuple[int, int] = (0, 1)
) -> Iterator[RawBatch]:
    """The file's data lines in batches of ``batch_rows`` physical lines (the header, checked by
    ``check_file``, is skipped). ``part``: ``(index, of)``, only batches ``index``, ``index + of``, ... (a
    reader of ``of`` reading in turns: see :func:`in_turns`); alone, a batch of blank lines only is not
    yielded, with others it is (empty), so that every reader keeps its turns."""
    index, of = part
    number = 0  # of the next batch
    next_line = 2  # file line of the first line in ``pending``
    pending: list[str] = []
    with path.open(encoding="utf-8-sig") as handle:  # universal newlines: \r\n and \r end a line too
        handle.readline()
        rest = ""
        while True:
            chunk = handle.read(_CHUNK_CHARS)
            data = rest + chunk
            if chunk:
                cut = data.rfind("\n") + 1
                data, rest = data[:cut], data[cut:]
            else:
                rest = ""
            raws = data.split("\n")
            if data.endswith("\n") or not data:
                raws.pop()
            pending = pending + raws if pending else raws
            while pending and (len(pending) >= (limit := _batch_limit(number, batch_rows)) or not chunk):
                take, pending = pending[:limit], pending[limit:]
                if number % of == index:
                    batch = _raw_batch(take, next_line)
                    if batch.rows or of > 1:
                        yield batch
                number += 1
                next_line += len(take)
            if not chunk:
                break


def json_batches(
    path: Path, *, batch_rows: int = BATCH_ROWS, part: tuple[int, int] = (0, 1)
) -> Iterator[RawBatch]:
    """JSON lines in batches of ``batch_rows`` objects, blank lines skipped; ``part`` as in
    :func:`csv_batches` (the other readers' lines are counted, not parsed)."""
    index, of = part
    number = 0
    batch = RawBatch()
    with path.open(encoding="utf-8-sig") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            batch.rows += 1
            if number % of == index:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    obj = None
                if not isinstance(obj, dict):
                    batch.errors.append(RowError(line_no, "row", "not a JSON object"))
                else:
                    cast(list[int], batch.lines).append(line_no)
                    batch.values.append([obj.get(name) for name in COLUMNS])
            if batch.rows >= _batch_limit(number, batch_rows):
                if number % of == index:
                    yield batch
                number += 1
                batch = RawBatch()
    if batch.rows and number % of == index:
        yield batch


def _check_json_file(path: Path) -> int:
    data_lines = 0
    try:
        with path.open("rb") as handle:
            for raw in handle:
                raw.decode("utf-8")
                data_lines += 1
    except OSError as exc:
        raise ImportFileUnreadable(f"cannot open {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ImportFileUnreadable(f"line {data_lines + 1}: the file is not UTF-8 text") from None
    return data_lines


# --- checking and writing ---------------------------------------------------------------------------------

_MOVES_SQLITE = (
    "CREATE TEMP TABLE IF NOT EXISTS ka_moves (line_id INTEGER PRIMARY KEY, plan_id INTEGER NOT NULL, "
    "at TEXT NOT NULL)"
)
_MOVES_POSTGRES = (
    "CREATE TEMP TABLE IF NOT EXISTS ka_moves (line_id integer PRIMARY KEY, plan_id integer NOT NULL, "
    "at timestamptz NOT NULL)"
)
_EVENTS_POSTGRES = (
    "CREATE TEMP TABLE IF NOT EXISTS ka_events (event_id text NOT NULL, line_id integer NOT NULL, "
    "kind text NOT NULL, occurred_at timestamptz NOT NULL, counted boolean NOT NULL, "
    "received_at timestamptz NOT NULL)"
)
#: SQLite: the lines of a staged batch's numbers (``n`` as in ``ka_numbers``), with their newest events.
_FOUND_SQLITE = (
    "CREATE TEMP TABLE IF NOT EXISTS ka_found (n INTEGER PRIMARY KEY, line_id INTEGER NOT NULL, "
    "plan_id INTEGER NOT NULL, recycled INTEGER NOT NULL, since TEXT NOT NULL, newest TEXT NOT NULL)"
)
#: SQLite: whether an event (``e``) counts on its line's plan (``f``), by ``ka_counting``.
_COUNTED_SQLITE = (
    "EXISTS (SELECT 1 FROM temp.ka_counting AS c WHERE c.plan_id = f.plan_id AND c.kind = e.kind)"
)
#: SQLite: the moves of a staged batch whose events are all new and all count.
_STAGED_MOVES = "SELECT line_id, plan_id, newest FROM temp.ka_found WHERE NOT recycled AND newest > since"
_EVENT_COLUMNS = "(event_id, line_id, kind, occurred_at, counted, received_at)"
_INSERT_SQLITE = (
    "INSERT INTO usage_events (event_id, line_id, kind, occurred_at, counted, received_at) "
    "VALUES (?, ?, ?, ?, {counted}, '{received}') ON CONFLICT (event_id) DO NOTHING"
)
#: PostgreSQL: the batch's events not stored yet, inserted; per line, how many and the newest that counts
#: (as :meth:`ActivityWriter.text_of` writes it).
_INSERT_POSTGRES = (
    f"WITH new AS (INSERT INTO usage_events {_EVENT_COLUMNS} SELECT * FROM ka_events "
    "ON CONFLICT (event_id) DO NOTHING RETURNING line_id, occurred_at, counted) "
    "SELECT line_id, count(*), to_char(max(occurred_at) FILTER (WHERE counted) AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\') FROM new GROUP BY line_id'
)
#: SQLite: the rowid the open transaction's events come after (the table has no other growing key).
_SQLITE_FLOOR = "SELECT COALESCE(max(rowid), 0) FROM usage_events"

Line = tuple[int, int, str, str]  # line id, plan id, status, last activity (or activation) as a stamp
Insert = tuple[str, int, str, str, bool]  # event id, line id, kind, occurred_at, counted


def _text_columns(raw: RawBatch) -> tuple[Sequence[str], ...] | None:
    """A batch's four columns when it has no unreadable line and every value is text (a JSON value may not
    be); else None."""
    if raw.errors:
        return None
    if raw.columns is not None:  # a CSV file holds text only
        return raw.columns
    if not raw.values:
        return None
    columns = tuple(zip(*raw.values, strict=True))
    if any(set(map(type, column)) != {str} for column in columns):
        return None
    return cast(tuple[Sequence[str], ...], columns)


def _good_ids(ids: Sequence[str]) -> bool:
    """Whether every event id (text) has 1 to 80 printable characters."""
    return min(map(len, ids)) > 0 and max(map(len, ids)) <= 80 and all(map(str.isprintable, ids))


def _newest(numbers: Sequence[str], at: list[str]) -> dict[str, str]:
    """Each number's newest stamp: in one C-level pass when the batch is in time order, as an export is."""
    if at == sorted(at):
        return dict(zip(numbers, at, strict=True))
    newest: dict[str, str] = {}
    get = newest.get
    for msisdn, stamp in zip(numbers, at, strict=True):
        if stamp > get(msisdn, ""):
            newest[msisdn] = stamp
    return newest


_Clean = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...], list[str]]

#: SQLite staging (see :class:`Staged`): each distinct number of the batch (``n`` from 1, in order of first
#: appearance) with its newest event of the batch (of any kind), and the batch's events (``k``: the event's
#: position in the batch, from 1), naming their number by ``n``.
_STAGE_NUMBERS = (
    "CREATE TABLE ka_numbers (n INTEGER PRIMARY KEY, msisdn TEXT NOT NULL, newest TEXT NOT NULL)",
    "INSERT INTO ka_numbers (msisdn, newest) VALUES (?, ?)",
)
_STAGE_EVENTS = (
    "CREATE TABLE ka_events (k INTEGER PRIMARY KEY, event_id TEXT NOT NULL, n INTEGER NOT NULL, "
    "kind TEXT NOT NULL, at TEXT NOT NULL)",
    "INSERT INTO ka_events (event_id, n, kind, at) VALUES (?, ?, ?, ?)",
)


def _columns(
    ids: tuple[str, ...],
    numbers: tuple[str, ...],
    kinds: tuple[str, ...],
    at: list[str],
    *,
    stamp_fields: dict[str, bytes],
) -> Columns | None:
    """A clean batch's :class:`Columns` (PostgreSQL; ``stamp_fields``: its timestamps' binary fields); None
    when a value holds a newline (JSON lines: its own check reports it)."""
    joined = ["\n".join(column) for column in (ids, numbers, kinds, at)]
    if any(text.count("\n") != len(ids) - 1 for text in joined):
        return None
    newest = _newest(numbers, at)
    ids_text, numbers_text, kinds_text, at_text = joined
    encoded = list(map(str.encode, ids))
    heads = map(_ROW_HEAD, repeat(len(_BINARY_COLUMNS_LIST)), map(len, encoded))
    fields = zip(
        heads, encoded, map(_KIND_FIELDS.__getitem__, kinds), map(stamp_fields.__getitem__, at), strict=False
    )
    return Columns(
        ids_text,
        numbers_text,
        kinds_text,
        at_text,
        frozenset(kinds),
        "\n".join(newest),
        "\n".join(newest.values()),
        list(map(b"".join, fields)),
    )


#: Events to a piece of the ``COPY`` data that the writer sends while it makes the next.
_COPY_CHUNK_ROWS = 20_000
#: PostgreSQL's binary ``COPY`` format: the header (signature, flags, no extension) and the trailer.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER = b"\xff\xff"
_ROW_HEAD = struct.Struct(">hi").pack  # a row's field count, and its first field's length
_INT4_FIELD = struct.Struct(">ii").pack  # length 4, an integer
_INT8_FIELD = struct.Struct(">iq").pack  # length 8, an integer
_BINARY_TRUE, _BINARY_FALSE = b"\x00\x00\x00\x01\x01", b"\x00\x00\x00\x01\x00"
#: The events' kinds as binary fields (an enum's binary form is its label).
_KIND_FIELDS = {kind: struct.pack(">i", len(kind)) + kind.encode() for kind in _KINDS}
#: The binary ``COPY``'s columns: the line comes after the fields a reader can make without the database.
_BINARY_COLUMNS_LIST = ("event_id", "kind", "occurred_at", "line_id", "counted", "received_at")
_BINARY_COLUMNS = f"({', '.join(_BINARY_COLUMNS_LIST)})"
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _binary_stamp(stamp: str) -> bytes:
    """A timestamp in :meth:`ActivityWriter.text_of`'s text as a binary ``timestamptz`` field: microseconds
    since 2000-01-01 UTC."""
    delta = datetime.fromisoformat(stamp) - _POSTGRES_EPOCH
    return _INT8_FIELD(8, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _binary_copy_chunks(rows: Iterator[bytes], suffix: bytes) -> Iterator[bytes]:
    """Binary ``COPY`` rows of ``rows`` (each row's fields but ``suffix``, the fields every row ends with) in
    pieces of :data:`_COPY_CHUNK_ROWS` rows, without the format's header and trailer: the server inserts a
    piece while this process joins the next, instead of waiting for the whole batch."""
    while chunk := list(islice(rows, _COPY_CHUNK_ROWS)):
        yield suffix.join(chunk) + suffix


def _staged(ids: tuple[str, ...], numbers: tuple[str, ...], kinds: tuple[str, ...], at: list[str]) -> Staged:
    """A clean batch staged for SQLite's writer (:class:`Staged`)."""
    newest = _newest(numbers, at)
    n_of = {msisdn: n for n, msisdn in enumerate(newest, start=1)}
    events = zip(ids, map(n_of.__getitem__, numbers), kinds, at, strict=True)
    payload = staged_database((*_STAGE_NUMBERS, newest.items()), (*_STAGE_EVENTS, events))
    return Staged(payload, frozenset(kinds), len(newest))


@dataclass
class _Stream:
    """PostgreSQL: the open transaction's ``COPY`` of clean batches into ``usage_events``
    (:meth:`ActivityWriter._stream_batch`)."""

    cursor: Any
    opening: Any  # the copy's context manager, entered
    copy: Any
    #: What was sent, kept to insert again should an event prove stored already.
    sent: list[bytes] = field(default_factory=list)
    rows: int = 0
    #: Each batch's newest events by line, moving the clocks when the copy succeeds.
    newest: list[dict[int, str]] = field(default_factory=list)
    #: The copy's failure on a stored event; the batches after it are only kept.
    failed: BaseException | None = None

    def write(self, chunk: bytes) -> None:
        """Send ``chunk``, keeping it."""
        self.sent.append(chunk)
        self.copy.write(chunk)


class ActivityWriter:
    """Checks one batch of events and writes it, moving the clocks of their lines, in one transaction.

    The checks are those of the API, with the same messages, cached per distinct number and timestamp (a
    mediation export repeats them). Timestamps are compared and handed to the database as text in one
    fixed format (UTC, microseconds), whose order is the order of time.
    """

    def __init__(
        self,
        session: Session,
        *,
        latest: datetime,
        replica: bool = False,
        transaction_rows: int = 0,
        lookups: Connection | None = None,
    ) -> None:
        self.session = session
        self.sql = Dialect(session)
        #: PostgreSQL: a second connection that finds the batches' lines while the session's connection
        #: copies events (:meth:`_stream_batch`). The lines it reads are committed ones, as the session's
        #: own would be: the transaction changes no line before its commit's moves.
        self.lookups = lookups
        self._stream: _Stream | None = None
        self._settled = [0, 0]  # events imported and found stored, not yet handed back
        #: Rows a transaction takes before it commits (at least one batch): :data:`POSTGRES_TRANSACTION_ROWS`.
        self.transaction_rows = transaction_rows
        self._open_rows = 0  # rows written in the open transaction
        #: The open transaction's clock moves so far, ``line -> newest event``, made at its commit.
        self._moves: dict[int, str] = {}
        self._moves_newest = ""  # the newest of them
        #: SQLite: a batch had duplicates; the moves are found among the events inserted after :attr:`floor`.
        self._moves_from_events = False
        self.floor: int | None = None  # SQLite: the rowid the open transaction's events come after
        self._stamp_fields: dict[str, bytes] = {}  # PostgreSQL: timestamps as binary COPY fields
        # The open transaction's lines found (:meth:`_look_up`): by number the row, the line as a binary COPY
        # field (PostgreSQL) and the line's id; the numbers of recycled lines; by line the plan and the clock;
        # the plans.
        self._seen: dict[str, tuple[str, int, int, str, str]] = {}
        self._line_fields: dict[str, bytes] = {}
        self._line_of: dict[str, int] = {}
        self._recycled: set[str] = set()
        self._plan_of: dict[int, int] = {}
        self._since: dict[int, str] = {}
        self._plans: set[int] = set()
        #: PostgreSQL: the events' insert skips the foreign key trigger (see :func:`import_activity`).
        self.replica = replica and self.sql.postgres
        self.plans: dict[int, PlanPolicy] = policies(session)
        self.counting = {plan_id: policy.counting for plan_id, policy in self.plans.items()}
        self.latest = latest
        self.numbers: dict[str, bool] = {}
        self.stamps: dict[str, str | tuple[str, str]] = {}
        self._counting_staged = False
        session.rollback()

    def stamp(self, value: str) -> str | tuple[str, str]:
        """``value`` as the database is given it (UTC text), or the error."""
        try:
            parsed = parse_time(value)
        except ValueError:
            return E_STAMP
        if parsed.tzinfo is None:
            return E_NAIVE
        parsed = parsed.astimezone(UTC)
        if parsed > self.latest:
            return E_FUTURE
        return self.text_of(parsed)

    def text_of(self, value: datetime) -> str:
        """A UTC time as comparable text in the database's format."""
        value = value.astimezone(UTC)
        if self.sql.postgres:
            return value.isoformat(timespec="microseconds")
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def _lines(self, numbers: list[str]) -> list[tuple[str, int, int, str, str]]:
        """The known lines among ``numbers``: ``(number, line id, plan id, status, last activity or
        activation as a stamp)``, one query; on PostgreSQL on :attr:`lookups` when given, whose transaction
        ends with it."""
        lookups = self.lookups if self.sql.postgres else None
        cursor = driver(lookups if lookups is not None else self.session.connection()).cursor()
        try:
            if self.sql.postgres:
                # The stamp as text in :meth:`text_of`'s format, made by the server: a batch's datetimes
                # built by the driver and formatted back by this process cost more than the query. The
                # numbers (E.164: no newline) go as one text, split by the server: adapting a list of
                # 100,000 strings to an array took the driver 0.11 s, longer than the query.
                cursor.execute(
                    "SELECT msisdn, id, plan_id, status, to_char(COALESCE(last_activity_at, activated_at) "
                    "AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') "
                    "FROM lines WHERE msisdn = ANY(string_to_array(%s, E'\\n'))",
                    ("\n".join(numbers),),
                )
                found = cast(list[tuple[str, int, int, str, str]], cursor.fetchall())
                if lookups is not None:
                    lookups.rollback()
                return found
            cursor.execute(
                "SELECT msisdn, id, plan_id, status, COALESCE(last_activity_at, activated_at) "
                "FROM lines WHERE msisdn IN (SELECT value FROM json_each(?))",
                (json.dumps(numbers),),
            )
            return cast(list[tuple[str, int, int, str, str]], cursor.fetchall())
        finally:
            cursor.close()

    def _look_up(self, numbers: list[str]) -> None:
        """Find the lines of ``numbers``, each number once per transaction: a line found by an earlier batch
        of the open transaction is taken as found then (its clock has not moved since: the moves are made at
        the commit). Fills the transaction's tables of the lines found (:attr:`_seen` and those beside it)."""
        if not self._open_rows:
            self._seen, self._line_fields, self._line_of, self._recycled = {}, {}, {}, set()
            self._plan_of, self._since, self._plans = {}, {}, set()
        seen = self._seen
        missing = list(filterfalse(seen.__contains__, numbers))
        if not missing:
            return
        rows = self._lines(missing)
        if not rows:
            return
        # Column by column, in C: a batch's lookup is 100,000 rows and more.
        msisdns, line_ids, plan_ids, statuses, sinces = zip(*rows, strict=True)
        seen.update(zip(msisdns, rows, strict=True))
        self._line_of.update(zip(msisdns, line_ids, strict=True))
        self._plan_of.update(zip(line_ids, plan_ids, strict=True))
        self._since.update(zip(line_ids, sinces, strict=True))
        self._plans.update(plan_ids)
        if LineStatus.RECYCLED.value in statuses:
            self._recycled.update(row[0] for row in rows if row[3] == LineStatus.RECYCLED.value)
        if self.sql.postgres:  # the line as a binary COPY field
            fields = map(_INT4_FIELD, repeat(4), line_ids)
            self._line_fields.update(zip(msisdns, fields, strict=False))

    def _found_lines(self, numbers: list[str]) -> list[tuple[str, int, int, str, str]]:
        """The lines of ``numbers`` that exist (:meth:`_look_up`)."""
        self._look_up(numbers)
        return [row for row in map(self._seen.get, numbers) if row is not None]

    def _check(  # noqa: PLR0912 - one branch per check, inlined for speed
        self, raw: RawBatch, found: dict[str, Line]
    ) -> tuple[list[Insert], list[RowError], dict[int, str]]:
        """The rows to insert, the errors, and each line's newest counting event of the batch."""
        rows: list[Insert] = []
        errors = list(raw.errors)
        newest: dict[int, str] = {}
        numbers, stamps_seen, counting = self.numbers, self.stamps, self.counting
        recycled = LineStatus.RECYCLED.value
        for line_no, (event_id, msisdn, kind, occurred) in zip(raw.lines, raw.values, strict=True):
            problem: tuple[str, str] | None = None
            if not isinstance(event_id, str) or not 0 < len(event_id) <= 80 or not event_id.isprintable():
                problem = E_EVENT_ID
            elif not isinstance(msisdn, str):
                problem = E_MSISDN
            else:
                valid = numbers.get(msisdn)
                if valid is None:
                    valid = numbers[msisdn] = E164.match(msisdn) is not None
                if not valid:
                    problem = E_MSISDN
                elif not isinstance(kind, str) or kind not in _KINDS:
                    problem = E_KIND
                elif not isinstance(occurred, str):
                    problem = E_REQUIRED
                else:
                    stamp = stamps_seen.get(occurred)
                    if stamp is None:
                        stamp = stamps_seen[occurred] = self.stamp(occurred)
                    line = found.get(msisdn)
                    if isinstance(stamp, tuple):
                        problem = stamp
                    elif line is None:
                        problem = E_NO_LINE
                    elif line[2] == recycled:
                        problem = E_RECYCLED
                    else:
                        counted = kind in counting[line[1]]
                        rows.append((event_id, line[0], kind, stamp, counted))
                        if counted and stamp > newest.get(line[0], line[3]):
                            newest[line[0]] = stamp
            if problem is not None:
                errors.append(RowError(line_no, *problem))
        errors.sort(key=lambda e: e.line)
        return rows, errors, newest

    def prepare(self, raw: RawBatch) -> Prepared:
        """The checks of ``raw`` that need no database, done before its turn to be written (in the reader
        process of a big file, while the writer writes the batch before). Each check runs once per distinct
        value (numbers, kinds, timestamps repeat) or as one C-level pass over a column."""
        if len(self.stamps) > _CACHE_MAX:
            self.stamps.clear()
        if len(self.numbers) > _CACHE_MAX:
            self.numbers.clear()
        clean = self._clean(raw)
        if clean is not None and not self.sql.postgres:
            ids, numbers, kinds, _, at = clean
            return Prepared(raw.rows, raw.lines, [], None, None, [], _staged(ids, numbers, kinds, at))
        if clean is None:
            columns = None
        else:
            ids, numbers, kinds, _, at = clean
            columns = _columns(ids, numbers, kinds, at, stamp_fields=self._binary_stamps(at))
        if clean is None or columns is None:
            # Only numbers that can be a line's are looked up (a JSON string may hold a NUL, which
            # PostgreSQL refuses in any text).
            values = raw.value_rows()
            distinct = {v[1] for v in values if isinstance(v[1], str) and E164.match(v[1])}
            return Prepared(raw.rows, raw.lines, sorted(distinct), None, values, raw.errors)
        # The distinct numbers are those of ``newest_numbers``; the writer splits them out.
        return Prepared(raw.rows, raw.lines, [], columns, None, [])

    def _clean(self, raw: RawBatch) -> _Clean | None:
        """The batch's columns (event ids, numbers, kinds, timestamps as read, and as the database is given
        them) when every line passed the checks that need no database; None when a line is bad (or
        unreadable), which :meth:`_check` then finds and reports."""
        columns = _text_columns(raw)
        if columns is None:
            return None
        ids, numbers, kinds, occurred = columns
        distinct = set(numbers)
        if not set(kinds) <= _KINDS or not _good_ids(ids):
            return None  # a bad kind or event id
        formats = self.numbers
        for msisdn in distinct:
            valid = formats.get(msisdn)
            if valid is None:
                valid = formats[msisdn] = E164.match(msisdn) is not None
            if not valid:
                return None
        if not self._good_stamps(occurred):
            return None
        at = cast(list[str], list(map(self.stamps.__getitem__, occurred)))
        return cast(_Clean, (ids, numbers, kinds, occurred, at))

    def _check_fast(
        self, columns: Columns, numbers: list[str], received: str
    ) -> tuple[Iterator[bytes], dict[int, str]] | None:
        """:meth:`_check` for a batch whose lines passed :meth:`_columns` (``numbers``: its distinct ones):
        its events for ``usage_events`` (:data:`_BINARY_COLUMNS`, ``received`` the time they were received) in
        ``COPY``'s binary format, made in pieces as the copy takes them (:func:`_binary_copy_chunks`), and
        each line's newest counting event; None when a number has no live line. Column by column, joined in
        C: no Python step per event. The binary format spares the server parsing the timestamps' text, a
        fifth of its time copying the events (measured in psql: 2.7 s against 3.4 s per million)."""
        self._look_up(numbers)
        seen = self._seen
        if not all(map(seen.__contains__, numbers)) or not self._recycled.isdisjoint(numbers):
            return None  # a number without a line, or with a recycled one
        line_of = self._line_of
        row_numbers = columns.numbers.split("\n")
        lines = map(self._line_fields.__getitem__, row_numbers)
        received_field = _binary_stamp(received)
        # Every event counts when the plans of all the transaction's lines so far count every kind it holds.
        if all(columns.kinds_present <= self.counting[plan] for plan in self._plans):
            newest_lines = map(line_of.__getitem__, columns.newest_numbers.split("\n"))
            newest = dict(zip(newest_lines, columns.newest_at.split("\n"), strict=True))
            # A row: the reader's prefix, the line, then "counted" and the time received, alike in every row.
            suffix = _BINARY_TRUE + received_field
            return _binary_copy_chunks(map(bytes.__add__, columns.prefixes, lines), suffix), newest
        kinds, at = columns.kinds.split("\n"), columns.at.split("\n")
        counting, plan_of = self.counting, self._plan_of
        counts = {
            (msisdn, kind): kind in counting[plan_of[line_of[msisdn]]]
            for msisdn in numbers
            for kind in columns.kinds_present
        }
        counted = list(map(counts.__getitem__, zip(row_numbers, kinds, strict=True)))
        flags = {True: _BINARY_TRUE + received_field, False: _BINARY_FALSE + received_field}
        by_number: dict[str, str] = {}
        get = by_number.get
        for msisdn, stamp, counts_here in zip(row_numbers, at, counted, strict=True):
            if counts_here and stamp > get(msisdn, ""):
                by_number[msisdn] = stamp
        rows = map(b"".join, zip(columns.prefixes, lines, map(flags.__getitem__, counted), strict=False))
        return _binary_copy_chunks(rows, b""), {line_of[msisdn]: at for msisdn, at in by_number.items()}

    def _binary_stamps(self, at: list[str]) -> dict[str, bytes]:
        """The binary fields of the timestamps ``at`` (:func:`_binary_stamp`), each made once per import."""
        known = self._stamp_fields
        if len(known) > _CACHE_MAX:
            known.clear()
        for stamp in set(at).difference(known):
            known[stamp] = _binary_stamp(stamp)
        return known

    def _good_stamps(self, occurred: Sequence[object]) -> bool:
        """Whether every timestamp is valid (each distinct one checked once, and remembered)."""
        stamps_seen = self.stamps
        for value in set(occurred):
            if not isinstance(value, str):
                return False
            stamp = stamps_seen.get(value)
            if stamp is None:
                stamp = stamps_seen[value] = self.stamp(value)
            if isinstance(stamp, tuple):
                return False
        return True

    def write(self, prepared: Prepared) -> tuple[int, int, list[RowError]]:
        """Check and insert one prepared batch; return (imported, already present, errors)."""
        if not prepared.rows:  # a reader's turn over blank lines only
            return 0, 0, []
        if prepared.staged is not None:
            return self._write_staged(prepared, prepared.staged)
        now, columns = utcnow(), prepared.columns
        received = self.text_of(now)
        numbers = prepared.numbers if columns is None else columns.newest_numbers.split("\n")
        checked = None if columns is None else self._check_fast(columns, numbers, received)
        if checked is not None:  # PostgreSQL, every line good: onto the transaction's stream of events
            chunks, newest = checked
            self._stream_batch(chunks, newest, cast(Columns, columns).ids.count("\n") + 1)
        else:  # a bad line, or good columns but a number without a live line: line by line
            self._end_stream()  # the connection is needed for the batch's own statements
            values = prepared.values if prepared.values is not None else cast(Columns, columns).values()
            raw = RawBatch(prepared.rows, prepared.lines, values, prepared.errors)
            found = self._found_lines(numbers)
            rows, errors, newest = self._check(raw, {row[0]: row[1:] for row in found})
            count = len(rows)
            imported, inserted = self._insert(rows, received) if count else (0, None)
            if inserted is not None:  # PostgreSQL, some were duplicates: the newest of those inserted moves
                self._merge_moves(inserted)
            elif imported == count:  # the newest per line, found while checking, moves
                self._merge_moves(newest)
            elif imported:  # SQLite, some were duplicates: only the events inserted now may move a clock
                self._moves_from_events = True
            self._settled[0] += imported
            self._settled[1] += count - imported
        self._open_rows += prepared.rows
        if self._open_rows >= self.transaction_rows:
            self.commit()
        imported, present = self.take_settled()
        return imported, present, errors if checked is None else []

    def take_settled(self) -> tuple[int, int]:
        """The events imported and found stored since the last call (a stream's, when it ended)."""
        (imported, present), self._settled = self._settled, [0, 0]
        return imported, present

    def _stream_batch(self, chunks: Iterator[bytes], newest: dict[int, str], count: int) -> None:
        """PostgreSQL: send a clean batch's events (binary ``COPY`` rows, without header or trailer) down the
        open transaction's stream into ``usage_events``, opening it at its first batch.

        One ``COPY`` takes every clean batch of a transaction, so the server inserts one batch's events while
        this process reads and checks the next (the numbers are looked up on another connection meanwhile,
        :attr:`lookups`). It runs in a savepoint, as if none of its events were stored yet; when one is, the
        copy fails on the key, and :meth:`_end_stream` inserts all of the stream's events again, skipping
        those stored. So a batch's counts are known when its stream ends: at the commit, or before a batch
        that needs the connection for itself."""
        import psycopg

        stream = self._stream
        if stream is None:
            cursor = driver(self.session.connection()).cursor()
            cursor.execute("SAVEPOINT ka_stream")
            if self.replica:
                cursor.execute("SET LOCAL session_replication_role = replica")
            opening = cursor.copy(f"COPY usage_events {_BINARY_COLUMNS} FROM STDIN (FORMAT binary)")
            stream = self._stream = _Stream(cursor, opening, opening.__enter__())
            stream.write(_BINARY_HEADER)
        stream.rows += count
        stream.newest.append(newest)
        if stream.failed is not None:
            stream.sent.extend(chunks)
            return
        try:
            for chunk in chunks:
                stream.write(chunk)
        except psycopg.errors.UniqueViolation as exc:  # an event stored already: the rest is kept for later
            stream.failed = exc
            stream.sent.extend(chunks)

    def abort(self) -> None:
        """Stop the transaction's stream of events, if open, without ending it: the server drops the copy
        (and the transaction, which the caller rolls back)."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        stopped = RuntimeError("the import stopped")
        with suppress(Exception):  # the copy's own failure, or the connection's: the transaction is lost
            stream.opening.__exit__(RuntimeError, stopped, None)
        with suppress(Exception):
            stream.cursor.close()

    def _end_stream(self) -> None:
        """PostgreSQL: end the transaction's stream of events (:meth:`_stream_batch`), if open, and settle
        its counts and moves: all its events imported and their newest moving the clocks; or, when one was
        stored already, the stream's copy rolled back and its events inserted skipping those stored, their
        newest (from the insert itself) moving the clocks."""
        import psycopg

        stream, self._stream = self._stream, None
        if stream is None:
            return
        cursor = stream.cursor
        try:
            if stream.failed is None:
                try:
                    stream.copy.write(_BINARY_TRAILER)  # not kept: the insert again adds its own
                    stream.opening.__exit__(None, None, None)
                except psycopg.errors.UniqueViolation as exc:
                    stream.failed = exc
            else:
                stream.opening.__exit__(type(stream.failed), stream.failed, stream.failed.__traceback__)
        except psycopg.errors.UniqueViolation:
            pass  # the copy's error, as expected: rolled back below
        try:
            if stream.failed is None:
                if self.replica:
                    cursor.execute("SET LOCAL session_replication_role = origin")
                cursor.execute("RELEASE SAVEPOINT ka_stream")
                for newest in stream.newest:
                    self._merge_moves(newest)
                self._settled[0] += stream.rows
                return
            cursor.execute("ROLLBACK TO SAVEPOINT ka_stream")
            cursor.execute("RELEASE SAVEPOINT ka_stream")
        finally:
            cursor.close()
        chunks = iter([*stream.sent, _BINARY_TRAILER])
        imported, inserted = self._copy_events(chunks, _BINARY_COLUMNS, binary=True, straight=False)
        self._merge_moves(inserted or {})
        self._settled[0] += imported
        self._settled[1] += stream.rows - imported

    def _merge_moves(self, newest: dict[int, str]) -> None:
        """Take each line's ``newest`` event into the open transaction's moves where it is newer. An export
        in time order has a batch's every event newer than every one before it: then in one C-level step."""
        if not newest:
            return
        moves = self._moves
        if not moves or min(newest.values()) >= self._moves_newest:
            moves.update(newest)
            self._moves_newest = max(self._moves_newest, *newest.values())
            return
        get = moves.get
        for line_id, at in newest.items():
            if at > get(line_id, ""):
                moves[line_id] = at
        self._moves_newest = max(moves.values())

    def commit(self) -> None:
        """Move the clocks of the open transaction's lines, once each, and commit it (the counts its stream's
        end settled wait for :meth:`take_settled`).

        A line's clock moves to its newest counting event among those the transaction inserted, found while
        checking, or (when a batch held events stored before) among the new events themselves."""
        self._end_stream()
        if self._open_rows:
            now = utcnow()
            if self._moves_from_events:
                self._move(None, now)
            elif self._moves:  # the lines whose clock moves forward: (line, plan, newest event)
                plan_of, since = self._plan_of, self._since
                moves = [(line, plan_of[line], at) for line, at in self._moves.items() if at > since[line]]
                self._move(moves, now, sorted({plan for _, plan, _ in moves}))
        self.session.commit()
        self._open_rows, self._moves, self._moves_from_events, self.floor = 0, {}, False, None
        self._moves_newest = ""

    def _write_staged(self, prepared: Prepared, staged: Staged) -> tuple[int, int, list[RowError]]:
        """SQLite: check and insert a staged batch in SQL (see :class:`Staged`). Its numbers' lines are found
        with one join into ``ka_found``; the events of numbers without a line or with a recycled one are
        reported and left out, the others inserted with one ``INSERT ... SELECT``."""
        if self._open_rows:  # a batch checked line by line before, in a transaction of several
            self.commit()
        session, now = self.session, utcnow()
        driver(cast(Connection, session.bind)).deserialize(staged.payload, name=SQLITE_STAGE_SCHEMA)
        cursor = driver(session.connection()).cursor()  # the write transaction begins here
        try:
            cursor.execute(_FOUND_SQLITE)
            cursor.execute("DELETE FROM temp.ka_found")
            cursor.execute(
                f"INSERT INTO temp.ka_found (n, line_id, plan_id, recycled, since, newest) "
                f"SELECT s.n, l.id, l.plan_id, l.status = '{LineStatus.RECYCLED.value}', "
                f"COALESCE(l.last_activity_at, l.activated_at), s.newest "
                f"FROM {SQLITE_STAGE_SCHEMA}.ka_numbers AS s JOIN lines AS l ON l.msisdn = s.msisdn"
            )
            cursor.execute("SELECT plan_id, count(*), total(recycled) FROM temp.ka_found GROUP BY plan_id")
            by_plan = cursor.fetchall()
            plans = [int(plan) for plan, _, _ in by_plan]
            found, recycled = sum(row[1] for row in by_plan), sum(row[2] for row in by_plan)
            errors: list[RowError] = []
            if found < staged.numbers or recycled:
                cursor.execute(
                    f"SELECT e.k, f.recycled FROM {SQLITE_STAGE_SCHEMA}.ka_events AS e "
                    "LEFT JOIN temp.ka_found AS f ON f.n = e.n WHERE f.n IS NULL OR f.recycled ORDER BY e.k"
                )
                lines = prepared.lines
                errors = [
                    RowError(lines[k - 1], *(E_RECYCLED if gone else E_NO_LINE))
                    for k, gone in cursor.fetchall()
                ]
            every = all(staged.kinds_present <= self.counting[plan] for plan in plans)
            if not every:
                self._stage_counting(cursor)
            counted = "1" if every else _COUNTED_SQLITE
            cursor.execute(_SQLITE_FLOOR)
            self.floor = int(cursor.fetchone()[0])
            cursor.execute(
                "INSERT INTO usage_events (event_id, line_id, kind, occurred_at, counted, received_at) "
                f"SELECT e.event_id, f.line_id, e.kind, e.at, {counted}, ? "
                f"FROM {SQLITE_STAGE_SCHEMA}.ka_events AS e CROSS JOIN temp.ka_found AS f ON f.n = e.n "
                "WHERE NOT f.recycled ON CONFLICT (event_id) DO NOTHING",
                (self.text_of(now),),
            )
            imported = int(cursor.rowcount)
        finally:
            cursor.close()
        count = prepared.rows - len(errors)
        if imported == count and every:  # every event is new and counts: each number's newest moves its line
            self._move(_STAGED_MOVES, now, plans)
        elif imported:  # some were duplicates, or do not count: only the counting events inserted now move
            self._move(None, now)
        session.commit()
        self.floor = None
        return imported, count - imported, errors

    def _stage_counting(self, cursor: Any) -> None:
        """SQLite: ``ka_counting``, the kinds each plan counts (for :data:`_COUNTED_SQLITE`), once."""
        if self._counting_staged:
            return
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS ka_counting (plan_id INTEGER NOT NULL, kind TEXT NOT NULL, "
            "PRIMARY KEY (plan_id, kind)) WITHOUT ROWID"
        )
        cursor.execute("DELETE FROM temp.ka_counting")
        cursor.executemany(
            "INSERT INTO temp.ka_counting (plan_id, kind) VALUES (?, ?)",
            [(plan, kind) for plan, kinds in self.counting.items() for kind in sorted(kinds)],
        )
        self._counting_staged = True

    def _insert(self, rows: list[Insert], received: str) -> tuple[int, dict[int, str] | None]:
        """Insert the events not stored yet: ``(event id, line id, kind, occurred_at, counted)``, received at
        ``received`` (our own clock's text); returns how many, and what :meth:`_copy_events` returns."""
        if self.sql.postgres:
            payload = "".join(
                f"{copy_text(row[0])}\t{row[1]}\t{row[2]}\t{row[3]}\t{'t' if row[4] else 'f'}\t{received}\n"
                for row in rows
            )
            return self._copy_events(iter([payload]), _EVENT_COLUMNS, binary=False)
        self._note_floor()
        cursor = driver(self.session.connection()).cursor()
        try:
            # The batch's constant is written into the statement: each value bound costs every row.
            cursor.executemany(_INSERT_SQLITE.format(counted="?", received=received), rows)
            return int(cursor.rowcount), None
        finally:
            cursor.close()

    def _note_floor(self) -> None:
        """SQLite: note the rowid the open transaction's events come after (at its first batch)."""
        if self.floor is None:
            self.floor = int(self.session.scalar(text(_SQLITE_FLOOR)) or 0)

    def _copy_events(
        self, chunks: Iterator[str] | Iterator[bytes], columns: str, *, binary: bool, straight: bool = True
    ) -> tuple[int, dict[int, str] | None]:
        """PostgreSQL: insert the events of ``chunks`` (pieces of ``COPY`` data of :data:`_EVENT_COLUMNS`,
        text or ``binary``) not stored yet; returns how many, and None when that was all of them, or else
        each line's newest counting event among those inserted (none: the line is left out).

        The batch is copied straight into ``usage_events``, in a savepoint, as if none of its events were
        stored yet (the usual case: a mediation system exports each event once). A duplicate (from an
        earlier run, a concurrent import, or within the file) fails that copy on the unique key; the
        savepoint is rolled back and the batch goes through a temporary table and ``INSERT ... ON CONFLICT
        DO NOTHING``, which skips the duplicates. The straight copy costs the server half of that insert
        (its speculative insertion per row), measured: 3.5 s against 0.9 + 6.3 s per million events.
        """
        session = self.session
        cursor = driver(session.connection()).cursor()
        sent: list[Any] = []
        form = " (FORMAT binary)" if binary else ""
        try:
            if straight:
                copied = self._copied(cursor, chunks, sent, f"{columns} FROM STDIN{form}")
                if copied is not None:
                    return copied, None
            else:
                sent.extend(chunks)
            session.execute(text(_EVENTS_POSTGRES))
            session.execute(text("TRUNCATE ka_events"))
            with cursor.copy(f"COPY ka_events {columns} FROM STDIN{form}") as copy:
                for chunk in sent:
                    copy.write(chunk)
        finally:
            cursor.close()
        with self._replica_role():
            per_line = session.execute(text(_INSERT_POSTGRES)).all()
        newest = {int(line_id): at for line_id, _, at in per_line if at is not None}
        return sum(int(count) for _, count, _ in per_line), newest

    def _copied(self, cursor: Any, chunks: Iterator[Any], sent: list[Any], source: str) -> int | None:
        """PostgreSQL: copy ``chunks`` straight into ``usage_events`` (``source``: the columns and source of
        the ``COPY`` statement), each kept in ``sent``; returns the rows copied, or None, with nothing
        written and every chunk in ``sent``, when an event of them is stored already (or twice in them)."""
        import psycopg

        cursor.execute("SAVEPOINT ka_copy")
        statement = f"COPY usage_events {source}"
        try:
            with self._replica_role(), cursor.copy(statement) as copy:
                for chunk in chunks:
                    sent.append(chunk)
                    copy.write(chunk)
        except psycopg.errors.UniqueViolation:
            sent.extend(chunks)  # the rest, which the failed copy did not take
            cursor.execute("ROLLBACK TO SAVEPOINT ka_copy")
            cursor.execute("RELEASE SAVEPOINT ka_copy")
            return None
        rows = int(cursor.rowcount)
        cursor.execute("RELEASE SAVEPOINT ka_copy")
        return rows

    @contextmanager
    def _replica_role(self) -> Iterator[None]:
        """PostgreSQL, with :attr:`replica`: the events' foreign key trigger skipped for the statement."""
        if self.replica:
            self.session.execute(text("SET LOCAL session_replication_role = replica"))
        yield
        if self.replica:
            self.session.execute(text("SET LOCAL session_replication_role = origin"))

    def _move(
        self, moves: list[tuple[int, int, str]] | str | None, now: datetime, plan_ids: list[int] | None = None
    ) -> None:
        """Move lines' clocks forward (never back) with their calendar: ``(line, plan, newest event)``.

        ``None``: take each line's newest counting event among those this batch inserted, in SQL; a string:
        a ``SELECT`` of those three columns. ``plan_ids``: the moves' plans (at least), when known.
        """
        session, sql = self.session, self.sql
        session.execute(text(_MOVES_POSTGRES if sql.postgres else _MOVES_SQLITE))
        session.execute(text("TRUNCATE ka_moves" if sql.postgres else "DELETE FROM ka_moves"))
        if isinstance(moves, str):
            session.execute(text(f"INSERT INTO ka_moves (line_id, plan_id, at) {moves}"))
        elif moves is None:
            session.execute(
                text(
                    "INSERT INTO ka_moves (line_id, plan_id, at) "
                    "SELECT e.line_id, l.plan_id, MAX(e.occurred_at) FROM usage_events AS e "
                    "JOIN lines AS l ON l.id = e.line_id WHERE e.rowid > :floor AND e.counted "
                    "GROUP BY e.line_id, l.plan_id, l.last_activity_at, l.activated_at "
                    "HAVING MAX(e.occurred_at) > COALESCE(l.last_activity_at, l.activated_at)"
                ),
                {"floor": self.floor},
            )
        elif not moves:
            return
        else:
            cursor = driver(session.connection()).cursor()
            try:
                if sql.postgres:
                    with cursor.copy("COPY ka_moves (line_id, plan_id, at) FROM STDIN") as copy:
                        copy.write("".join(f"{line}\t{plan}\t{at}\n" for line, plan, at in moves))
                else:
                    cursor.executemany("INSERT INTO ka_moves (line_id, plan_id, at) VALUES (?, ?, ?)", moves)
            finally:
                cursor.close()
        if sql.postgres:
            session.execute(text("ANALYZE ka_moves"))
        moved = "(l.last_activity_at IS NULL OR l.last_activity_at < m.at)"
        if plan_ids is None:
            plan_ids = [
                int(p) for p in session.scalars(text("SELECT DISTINCT plan_id FROM ka_moves ORDER BY 1"))
            ]
        if sql.postgres:
            # Lines whose calendar the sweep has not computed yet are locked first, as the sweep locks them
            # (by their lines row) before writing their calendar row; the others' calendar rows come before
            # their lines rows (the keep-alive lock order). So an import and a sweep never wait on each
            # other in a circle.
            session.execute(
                text(
                    "SELECT id FROM lines WHERE id IN (SELECT line_id FROM ka_moves) AND deadline_at IS NULL "
                    "ORDER BY id FOR UPDATE"
                )
            )
        # The moved live lines' sweep calendar, for every plan before any line is written. A line whose
        # calendar is computed (``deadline_at`` set) gets its new ``since`` and keeps its ``next_action_at``,
        # which the move can only have made early: the sweep then looks at the line, finds nothing due for
        # the new ``since`` and writes the true next action. One extra row for a later sweep (once per
        # reminder interval of a line that keeps being active) instead of rewriting the calendar's index for
        # every line of every batch. A line without a computed calendar gets all of it.
        for plan_id in plan_ids:
            policy = self.plans[plan_id]
            params = thresholds(policy, now)
            session.execute(
                stamps(
                    "INSERT INTO line_calendar (line_id, plan_id, since, next_action_at) "
                    f"SELECT m.line_id, m.plan_id, m.at, {first_action(sql, policy, 'm.at')} "
                    "FROM ka_moves AS m JOIN lines AS l ON l.id = m.line_id WHERE m.plan_id = :plan "
                    f"AND l.deadline_at IS NULL AND {moved} AND l.status != '{LineStatus.RECYCLED.value}' "
                    "ORDER BY m.line_id ON CONFLICT (line_id) DO UPDATE SET plan_id = excluded.plan_id, "
                    "since = excluded.since, next_action_at = excluded.next_action_at",
                    *params,
                ),
                {**params, "plan": plan_id},
            )
        session.execute(
            text(
                "UPDATE line_calendar SET since = m.at FROM ka_moves AS m "
                "WHERE line_calendar.line_id = m.line_id AND line_calendar.since < m.at"
            )
        )
        for plan_id in plan_ids:
            policy = self.plans[plan_id]
            session.execute(
                text(
                    "UPDATE lines SET last_activity_at = m.at, "
                    f"deadline_at = {sql.plus_days('m.at', policy.inactivity_days)} "
                    "FROM ka_moves AS m WHERE lines.id = m.line_id AND m.plan_id = :plan "
                    "AND (lines.last_activity_at IS NULL OR lines.last_activity_at < m.at)"
                ),
                {"plan": plan_id},
            )


def _transaction_rows(engine: Engine) -> int:
    """The rows an import's transaction takes on ``engine``'s database (0: one batch)."""
    return POSTGRES_TRANSACTION_ROWS if engine.dialect.name == "postgresql" else 0


def import_activity(
    engine: Engine,
    settings: Settings,  # noqa: ARG001 - the importers share one signature
    path: Path,
    *,
    actor: str = "cli",
    batch_rows: int = BATCH_ROWS,
    transaction_rows: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    parallel: bool | None = None,
) -> ImportResult:
    """Import usage events from ``path``; raises :class:`ImportFileUnreadable` before writing anything.
    ``parallel``: read in a reader process (default: for files of 4 MiB or more)."""
    started = time.perf_counter()
    is_json = path.suffix.lower() in _JSON_SUFFIXES
    total = _check_json_file(path) if is_json else check_file(path, COLUMNS)
    result = ImportResult(file=str(path))
    # A large page cache on SQLite, and no per-row foreign key re-check of the events' line: each batch finds
    # its lines in the transaction that inserts the events, and lines are never deleted. SQLite turns the
    # checks off for the connection; PostgreSQL skips the trigger around the insert alone (the replica
    # session role, when the role may take it; usage_events has no other trigger).
    with (
        gc_paused(),  # a batch is a million short-lived lists and tuples, with no reference cycles
        engine.connect() as conn,
        engine.connect() if engine.dialect.name == "postgresql" else nullcontext() as lookups,
        bulk_connection(conn, own_references=True) as replica,
        sqlite_stage(conn),
        Session(bind=conn) as session,
    ):
        writer = ActivityWriter(
            session,
            latest=utcnow() + CLOCK_SKEW,
            replica=replica,
            transaction_rows=_transaction_rows(engine) if transaction_rows is None else transaction_rows,
            lookups=lookups,
        )
        source = json_batches if is_json else csv_batches

        def prepared(index: int, of: int) -> Iterator[Prepared]:
            return map(writer.prepare, source(path, batch_rows=batch_rows, part=(index, of)))

        # A big file is read and checked by reader processes in turns while this one writes the batch before.
        readers = READERS if reads_in_parallel(path, parallel) else 0
        try:
            for batch in in_turns(prepared, readers=readers):
                imported, present, errors = writer.write(batch)
                result.rows += batch.rows
                result.imported += imported
                result.already_present += present
                result.add_errors(errors)
                if on_progress is not None:
                    on_progress(result.rows, total)
            writer.commit()
        except BaseException:
            writer.abort()  # the connection goes back to the pool out of any copy, and rolls back
            raise
        imported, present = writer.take_settled()
        result.imported += imported
        result.already_present += present
    result.seconds = time.perf_counter() - started
    record_run(engine, actor=actor, action="keepalive.activity_imported", result=result)
    return result
