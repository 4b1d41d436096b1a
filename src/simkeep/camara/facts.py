"""Each API worker's copy of the SIM Swap facts of every line, kept fresh from the database's change feed.

The SIM Swap check is asked on every login and payment of a bank's customers, so its answer must cost next
to nothing; a database lookup per check (an indexed read, a read transaction, its locks) was the largest
single cost of the check under load. Each worker therefore holds, for every line, the three facts the
answer needs (status, activation time, last SIM change) in one dict, a few tens of bytes per line
(``SIMKEEP_CAMARA_FACTS_CACHE_MAX_LINES`` bounds it; above it the worker reads the database per check as
before).

Freshness: triggers on ``lines`` and ``sim_changes`` (migration 0008) write the number of every line whose
facts change (a new line, a status, number or activation change, a SIM change, a deletion) to
``camara_changes`` in the same transaction. Every worker polls that feed every
``SIMKEEP_CAMARA_FACTS_POLL_SECONDS`` (default 0.25 s) and re-reads the facts of the numbers it names, so a
SIM change is in every worker's copy well within a second of its activation committing.

- SQLite serialises writers, so feed rows become visible in the order of their ids (never reused: pruning
  keeps the newest row): a poll reads the rows after the last id it saw.
- PostgreSQL assigns ids before commit, so a row with a smaller id can become visible after one with a
  larger id. Each row carries its transaction id, and each poll takes a snapshot first
  (``pg_current_snapshot``): every transaction below its ``xmax`` and not in its in-progress list had
  ended before the poll's read, so the read saw its rows. The next poll therefore reads only the rows of
  transactions that were in progress then or started since (``xid = ANY(xip) OR xid >= xmax``), skipping
  rows it already applied. A transaction left open for hours costs each poll nothing but its own id.

Until the first full load is done (a few seconds for a million lines, in the feed's thread) and whenever
the feed cannot be read for longer than :data:`STALE_AFTER`, the cache says it is not ready and checks read
the database per call, so an answer is never older than the freshness bound. Rows older than
:data:`RETENTION` are pruned from the feed by the workers; a worker that fell that far behind loads anew.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine, text

from simkeep.camara.repository import SWAP_FACTS_MANY, SwapFacts, facts_of_all_lines
from simkeep.models import LineStatus

log = structlog.get_logger("simkeep.camara")

#: Feed rows kept this long (a worker that could not poll for longer reloads everything).
RETENTION = timedelta(minutes=10)
#: A copy not refreshed for this long is not used (checks read the database until a poll succeeds).
STALE_AFTER = 0.9
#: How often a worker prunes the feed.
PRUNE_EVERY = 60.0
#: Numbers re-read per statement.
CHUNK = 500

_SNAPSHOT = text(
    "SELECT pg_snapshot_xmax(s)::text::bigint, "
    "ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) AS x) FROM pg_current_snapshot() AS s"
)
_SINCE_SNAPSHOT = text("SELECT id, msisdn FROM camara_changes WHERE xid >= :xmax OR xid = ANY(:xip)")
_OLDEST = text(
    "SELECT id, changed_at FROM camara_changes WHERE id > :after AND id < :newest ORDER BY id LIMIT 1000"
)
_STATUSES = tuple(status.value for status in LineStatus)
_STATUS_CODE = {status: code for code, status in enumerate(_STATUSES)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_BITS = 53  # microseconds since 1970 fit in 53 bits until the year 2255
_MASK = (1 << _BITS) - 1
_STATUS_BITS = 3


def key_of(msisdn: str) -> int | str:
    """The dict key of a number: its digits as an int for an E.164 number (half the memory of the string),
    the string itself otherwise (exact matching either way)."""
    digits = msisdn[1:]
    if msisdn[:1] == "+" and digits.isdigit() and digits[:1] != "0" and digits.isascii():
        return int(digits)
    return msisdn


def _us(value: datetime | str) -> int:
    """Microseconds since the epoch of a stored time (SQLite's text in UTC, or an aware datetime)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _US


def pack(status: str, activated: datetime | str, changed: datetime | str | None) -> int | SwapFacts:
    """The facts of one line in one int (status code, activation and last change in microseconds); the
    facts themselves when they do not fit (a status or time simkeep does not write)."""
    code = _STATUS_CODE.get(status)
    act = _us(activated)
    last = 0 if changed is None else _us(changed) + 1
    if code is None or not (0 <= act <= _MASK and 0 <= last <= _MASK):
        return _facts(status, activated, changed)
    return code | act << _STATUS_BITS | last << (_STATUS_BITS + _BITS)


def _facts(status: str, activated: datetime | str, changed: datetime | str | None) -> SwapFacts:
    return status, _EPOCH + _us(activated) * _US, None if changed is None else _EPOCH + _us(changed) * _US


def unpack(value: int | SwapFacts) -> SwapFacts:
    """The facts of a packed value (as :data:`~simkeep.camara.repository.SwapFacts`)."""
    if not isinstance(value, int):
        return value
    last = value >> (_STATUS_BITS + _BITS)
    return (
        _STATUSES[value & 7],
        _EPOCH + ((value >> _STATUS_BITS) & _MASK) * _US,
        None if last == 0 else _EPOCH + (last - 1) * _US,
    )


_RECYCLED_CODE = _STATUS_CODE[LineStatus.RECYCLED.value]
#: What the lookup of an unknown number unpacks (see :meth:`FactsCache.get`).
_ABSENT = pack(LineStatus.ACTIVE.value, _EPOCH, _EPOCH)


class FactsCache:
    """The worker's copy of every line's SIM Swap facts (see the module)."""

    def __init__(self, engine: Engine, *, poll_seconds: float, max_lines: int) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.max_lines = max_lines
        self.dialect = engine.dialect.name
        self._facts: dict[int | str, int | SwapFacts] = {}
        self._loaded = False
        #: monotonic time of the last successful load or poll.
        self._fresh_at = 0.0
        self._last_id = 0  # SQLite: the last feed id applied
        self._snapshot: tuple[int, list[int]] = (0, [])  # PostgreSQL: (xmax, in progress) at the last poll
        self._applied: set[int] = set()  # PostgreSQL: feed ids applied that may show again
        #: Feed rows the last poll read (tests: a poll reads only what it must).
        self.fetched = 0
        self._pruned_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Why the cache is off (too many lines), if it is.
        self.disabled: str | None = None
        many = SWAP_FACTS_MANY.compile(dialect=engine.dialect)
        self._many_sql = str(many)
        self._all_sql = str(facts_of_all_lines().compile(dialect=engine.dialect))

    # --- answering -----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether :meth:`get` may answer now: loaded, and refreshed within :data:`STALE_AFTER`."""
        return self._loaded and time.monotonic() - self._fresh_at < STALE_AFTER

    @property
    def state(self) -> str:
        """``ready``, ``loading`` (not loaded yet), ``stale`` (no recent poll) or ``off`` (too many lines)."""
        if self.disabled:
            return "off"
        if not self._loaded:
            return "loading"
        return "ready" if self.ready else "stale"

    def get(self, msisdn: str) -> SwapFacts | None:
        """The facts of the line holding ``msisdn``, or None when no line holds it: the same lookup and the
        same unpacking either way (an unknown number unpacks a stand-in), so an unknown number costs what
        a known one does."""
        value = self._facts.get(key_of(msisdn), _ABSENT)
        facts = unpack(value)
        return None if value is _ABSENT else facts

    def latest_us(self, msisdn: str) -> int | None:
        """When the number last moved to a SIM (its last SIM change, else its activation), in microseconds
        since the epoch, straight from the packed value (no datetimes: the SIM Swap check's hot path); None
        when no line holds the number or its line is recycled (IDENTIFIER_NOT_FOUND). The same lookup and
        arithmetic for an unknown number (a stand-in) as for a known one."""
        value = self._facts.get(key_of(msisdn), _ABSENT)
        if isinstance(value, int):
            last = value >> (_STATUS_BITS + _BITS)
            latest = last - 1 if last else (value >> _STATUS_BITS) & _MASK
            live = value & 7 != _RECYCLED_CODE
        else:  # facts that did not fit in an int
            latest = _us(value[2] or value[1])
            live = value[0] != LineStatus.RECYCLED.value
        return latest if live and value is not _ABSENT else None

    def __len__(self) -> int:
        return len(self._facts)

    # --- loading and polling -------------------------------------------------------------------------

    def load(self) -> None:
        """Read every line's facts anew (the feed position first, so nothing committed meanwhile is
        missed: the next poll applies it)."""
        with self.engine.connect() as conn:
            count = int(conn.execute(text("SELECT count(*) FROM lines")).scalar_one())
            if count > self.max_lines:
                self.disabled = f"{count} lines, more than camara_facts_cache_max_lines={self.max_lines}"
                self._loaded = False
                return
            self.disabled = None
            positioned_at = time.monotonic()  # the copy holds every commit before this moment
            position = self._position(conn)
            raw: Any = conn.connection.dbapi_connection
            cursor: Any = raw.cursor()
            facts: dict[int | str, int | SwapFacts] = {}
            try:
                if self.dialect == "postgresql":  # row by row from the server: no whole result in memory
                    for msisdn, status, activated, changed in cursor.stream(self._all_sql):
                        facts[key_of(msisdn)] = pack(str(status), activated, changed)
                else:
                    cursor.execute(self._all_sql)
                    while rows := cursor.fetchmany(10_000):
                        for msisdn, status, activated, changed in rows:
                            facts[key_of(msisdn)] = pack(str(status), activated, changed)
            finally:
                cursor.close()
        self._facts = facts
        self._last_id, self._snapshot = position
        self._applied = set()
        self._fresh_at = positioned_at  # a load longer than STALE_AFTER is not used before its first poll
        self._loaded = True
        self.poll()

    def _position(self, conn: Any) -> tuple[int, tuple[int, list[int]]]:
        """Where the feed stands now: SQLite's last id, or PostgreSQL's snapshot (xmax, in progress)."""
        if self.dialect == "postgresql":
            xmax, xip = conn.execute(_SNAPSHOT).one()
            return 0, (int(xmax), [int(x) for x in xip])
        last = conn.execute(text("SELECT coalesce(max(id), 0) FROM camara_changes")).scalar_one()
        return int(last), (0, [])

    def poll(self) -> int:
        """Apply what the feed holds since the last poll; returns how many numbers were re-read."""
        started = time.monotonic()
        with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                snapshot = self._position(conn)[1]  # before the read: the next poll starts from here
                xmax, xip = self._snapshot
                rows = conn.execute(_SINCE_SNAPSHOT, {"xmax": xmax, "xip": xip}).all()
                changed = {row[1] for row in rows if row[0] not in self._applied}
                self._reread(conn, changed)
                self._applied = {row[0] for row in rows}
                self._snapshot = snapshot
            else:
                rows = conn.execute(
                    text("SELECT id, msisdn FROM camara_changes WHERE id > :last ORDER BY id"),
                    {"last": self._last_id},
                ).all()
                changed = {row[1] for row in rows}
                self._reread(conn, changed)
                if rows:
                    self._last_id = int(rows[-1][0])
        self.fetched = len(rows)
        self._fresh_at = started
        return len(changed)

    def _reread(self, conn: Any, msisdns: Iterable[str]) -> None:
        """Read the facts of these numbers again (a number no line holds any more leaves the copy)."""
        pending = sorted(msisdns)
        for start in range(0, len(pending), CHUNK):
            chunk = pending[start : start + CHUNK]
            found = {row[0]: row for row in self._read(conn, chunk)}
            for msisdn in chunk:
                row = found.get(msisdn)
                if row is None:
                    self._facts.pop(key_of(msisdn), None)
                else:
                    self._facts[key_of(msisdn)] = pack(str(row[1]), row[2], row[3])

    def _read(self, conn: Any, chunk: Sequence[str]) -> Sequence[Any]:
        cursor: Any = conn.connection.dbapi_connection.cursor()
        try:
            if self.dialect == "postgresql":
                cursor.execute(self._many_sql, {"msisdns": list(chunk)})
            else:
                marks = ", ".join("?" * len(chunk))
                cursor.execute(self._all_sql + f" WHERE lines.msisdn IN ({marks})", tuple(chunk))
            rows: Sequence[Any] = cursor.fetchall()
            return rows
        finally:
            cursor.close()

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete feed rows older than :data:`RETENTION`, oldest first, in id order (no index on the time:
        the triggers write one row per change, and every index on the feed would cost each of them); the
        newest row always stays, so ids keep growing. Returns how many rows went."""
        cutoff = _us(((now or datetime.now(UTC)) - RETENTION).astimezone(UTC))
        deleted = 0
        with self.engine.connect() as conn:
            newest = conn.execute(text("SELECT max(id) FROM camara_changes")).scalar()
            after = 0
            while newest is not None:
                rows = conn.execute(_OLDEST, {"after": after, "newest": newest}).all()
                boundary = None
                for row_id, changed_at in rows:
                    if _us(changed_at) >= cutoff:
                        break
                    boundary = row_id
                if boundary is None:
                    break
                result: Any = conn.execute(text("DELETE FROM camara_changes WHERE id <= :b"), {"b": boundary})
                deleted += int(result.rowcount or 0)
                if boundary != rows[-1][0]:  # a recent row ends the old ones
                    break
                after = boundary
        return deleted

    # --- the feed's thread ---------------------------------------------------------------------------

    def start(self) -> None:
        """Load in the background, then poll every ``poll_seconds`` until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="camara-facts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:
                log.exception("camara.facts_poll_failed")
                self._stop.wait(1.0)
                continue
            self._stop.wait(self.poll_seconds)

    def _tick(self) -> None:
        behind = time.monotonic() - self._fresh_at > RETENTION.total_seconds() / 2
        if not self._loaded or behind:
            started = time.monotonic()
            self.load()
            if self.disabled:
                log.warning("camara.facts_cache_off", reason=self.disabled)
                self._stop.wait(60.0)  # look again later: lines may have been removed
                return
            log.info(
                "camara.facts_loaded", lines=len(self._facts), seconds=round(time.monotonic() - started, 2)
            )
            return
        self.poll()
        if time.monotonic() - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            self.prune()
