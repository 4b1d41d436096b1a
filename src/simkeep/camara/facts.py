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
SIM change is in every worker's copy well within a second of its activation committing. The polls run on
the worker's event loop (:meth:`FactsCache.run_polls`), not in a thread: under load a thread waits for the
interpreter lock behind the loop at every statement, and polls that slow let the copy go stale.

- SQLite serialises writers, so feed rows become visible in the order of their ids (never reused: pruning
  keeps the newest row): a poll reads the rows after the last id it saw.
- PostgreSQL assigns ids before commit, so a row with a smaller id can become visible after one with a
  larger id. Each row carries its transaction id, and each poll's statement returns the snapshot it read
  with (``pg_current_snapshot``): every transaction below its ``xmax`` and not in its in-progress list had
  ended before the read, so the read saw its rows. The next poll therefore reads only the rows of
  transactions that were in progress then or started since (``xid = ANY(xip) OR xid >= xmax``), skipping
  rows it already applied. A transaction left open for hours costs each poll nothing but its own id.

A bulk load that writes lines without a feed row each (the first ``simkeep lines import`` into an empty
database, see :func:`simkeep.lines.importer.first_load`) writes one row naming :data:`RELOAD` instead of a
number: a worker whose poll meets it drops its copy and loads every line anew, reading the database per
check meanwhile, as it does before its first load.

Until the first full load is done (a few seconds for a million lines, in the feed's thread) and whenever
the feed cannot be read for longer than :data:`STALE_AFTER`, the cache says it is not ready and checks read
the database per call, so an answer is never older than the freshness bound. Rows older than
:data:`RETENTION` are pruned from the feed by the workers; a worker that fell that far behind loads anew.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
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
#: A feed row's number meaning "every line may have changed": the copy is loaded anew (no number is ``*``).
RELOAD = "*"

_SNAPSHOT_SQL = (
    "SELECT pg_snapshot_xmax(s)::text::bigint, "
    "ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) AS x) FROM pg_current_snapshot() AS s"
)
#: A PostgreSQL poll in one statement: the statement's own snapshot (``pg_current_snapshot`` is the snapshot
#: the statement reads with) and the feed rows of the transactions the last poll's snapshot had not seen
#: ended, as two aligned arrays (NULL when there are none).
_POLL_SQL = (
    "SELECT pg_snapshot_xmax(s)::text::bigint, "
    "ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) AS x), c.ids, c.msisdns "
    "FROM pg_current_snapshot() AS s, "
    "(SELECT array_agg(id) AS ids, array_agg(msisdn) AS msisdns FROM camara_changes "
    "WHERE xid >= %(xmax)s OR xid = ANY(%(xip)s::bigint[])) AS c"
)
_SINCE_ID_SQL = "SELECT id, msisdn FROM camara_changes WHERE id > ? ORDER BY id"
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


_Step = TypeVar("_Step")


def _cursor(conn: Any) -> Any:
    """A cursor of the driver's own under a SQLAlchemy connection."""
    return conn.connection.dbapi_connection.cursor()


def _advance(steps: Generator[_Step, Any, int], rows: Sequence[Any] | None) -> _Step | int:
    """The next step of a poll (a statement, or a pause), given the rows of the statement before; the poll's
    result when done."""
    try:
        return steps.send(rows)
    except StopIteration as done:
        result: int = done.value
        return result


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
        #: Held by a load (the thread) and by a poll on the event loop, so that they never overlap.
        self._guard = threading.Lock()
        #: The event loop polls (:meth:`run_polls`); the thread only loads and prunes.
        self._loop_polls = False
        self._aconnection: psycopg.AsyncConnection[Any] | None = None
        #: Resolved when the event loop's poll under way (or the next one) ends (:meth:`wait_fresh`).
        self._next_poll: asyncio.Future[None] | None = None
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
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

    async def wait_fresh(self, timeout: float) -> bool:
        """Whether the copy is ready, waiting up to ``timeout`` seconds for the event loop's next poll when
        it is loaded but stale (a poll running late). Under load a late poll would otherwise send every
        check to the database at once, and that flood of reads kept the latency high long after the poll
        came back; one poll answers them all."""
        if self.ready:
            return True
        waiter = self._next_poll
        if waiter is None or not self._loaded:
            return False
        await asyncio.wait((waiter,), timeout=timeout)
        return self.ready

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
        with self._guard:
            self._load()

    def _load(self) -> None:
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
            xmax, xip = conn.exec_driver_sql(_SNAPSHOT_SQL).one()
            return 0, (int(xmax), [int(x) for x in xip])
        last = conn.execute(text("SELECT coalesce(max(id), 0) FROM camara_changes")).scalar_one()
        return int(last), (0, [])

    def poll(self) -> int:
        """Apply what the feed holds since the last poll; returns how many numbers were re-read (blocking:
        the feed's thread before the loop polls, and tests)."""
        run = self._poll_here()
        while (done := _advance(run, None)) is None:
            pass
        return done

    def _poll_here(self) -> Generator[None, None, int]:
        """One poll through the engine's own connection, pausing (yielding) after each statement."""
        steps = self._poll_steps()
        with self.engine.connect() as conn:
            cursor = _cursor(conn)
            try:
                step = _advance(steps, None)
                while not isinstance(step, int):
                    cursor.execute(*step)
                    rows = cursor.fetchall()
                    yield
                    step = _advance(steps, rows)
                return step
            finally:
                cursor.close()

    async def apoll(self) -> int:
        """:meth:`poll` on the event loop (see :meth:`run_polls`): PostgreSQL through an async connection of
        its own, SQLite on its local file with a turn of the loop between statements."""
        if self.dialect != "postgresql":
            run = self._poll_here()
            while (done := _advance(run, None)) is None:
                await asyncio.sleep(0)
            return done
        steps = self._poll_steps()
        connection = self._aconnection
        if connection is None or connection.closed:
            connection = self._aconnection = await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True
            )
        try:
            async with connection.cursor() as acursor:
                step = _advance(steps, None)
                while not isinstance(step, int):
                    await acursor.execute(*step)
                    step = _advance(steps, await acursor.fetchall())
                return step
        except BaseException:
            self._aconnection = None  # a broken connection is dropped; the next poll opens a new one
            await connection.close()
            raise

    def _poll_steps(self) -> Generator[tuple[str, Any], Sequence[Any], int]:
        """One poll, as the statements it runs (yielded with their parameters; each is sent its rows back):
        the same steps whether a thread or the event loop drives them. Returns how many numbers it re-read."""
        started = time.monotonic()
        if self.dialect == "postgresql":
            xmax, xip = self._snapshot
            ((new_xmax, new_xip, ids, msisdns),) = yield _POLL_SQL, {"xmax": xmax, "xip": xip}
            snapshot = (int(new_xmax), [int(x) for x in new_xip])  # where the next poll starts
            rows: Sequence[Any] = list(zip(ids or (), msisdns or (), strict=True))
            changed = {msisdn for row_id, msisdn in rows if row_id not in self._applied}
        else:
            rows = yield _SINCE_ID_SQL, (self._last_id,)
            changed = {row[1] for row in rows}
        if RELOAD in changed:  # a bulk load: the thread loads every line anew; checks read the database
            self._loaded = False
            self.fetched = len(rows)
            return 0
        pending = sorted(changed)
        for start in range(0, len(pending), CHUNK):
            chunk = pending[start : start + CHUNK]
            self._apply(chunk, (yield self._read_sql(chunk)))
        if self.dialect == "postgresql":
            self._applied = {row[0] for row in rows}
            self._snapshot = snapshot
        elif rows:
            self._last_id = int(rows[-1][0])
        self.fetched = len(rows)
        self._fresh_at = started
        return len(changed)

    def _read_sql(self, chunk: Sequence[str]) -> tuple[str, Any]:
        """The statement (and its parameters) reading the facts of these numbers."""
        if self.dialect == "postgresql":
            return self._many_sql, {"msisdns": list(chunk)}
        marks = ", ".join("?" * len(chunk))
        return self._all_sql + f" WHERE lines.msisdn IN ({marks})", tuple(chunk)

    def _apply(self, chunk: Sequence[str], rows: Sequence[Any]) -> None:
        """Put the facts read for these numbers in the copy (a number no line holds any more leaves it)."""
        found = {row[0]: row for row in rows}
        for msisdn in chunk:
            row = found.get(msisdn)
            if row is None:
                self._facts.pop(key_of(msisdn), None)
            else:
                self._facts[key_of(msisdn)] = pack(str(row[1]), row[2], row[3])

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
        """Load in the background, then poll every ``poll_seconds`` until :meth:`stop` (the thread polls
        unless :meth:`run_polls` runs on the event loop)."""
        self._thread = threading.Thread(target=self._run, name="camara-facts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    async def run_polls(self) -> None:
        """Poll the feed from the event loop every ``poll_seconds``, until cancelled; the thread then only
        loads (and reloads) and prunes. A worker's event loop is busy under load but never blocked for long,
        whereas a thread waits for the interpreter lock at every statement, behind the loop: polled from a
        thread under load, a poll took up to 0.9 s, the copy went stale and every check read the database.
        A poll that fails is logged and tried again at the next turn (meanwhile the copy goes stale and
        checks read the database, as the freshness bound requires)."""
        self._loop_polls = True
        loop = asyncio.get_running_loop()
        due = loop.time()
        self._next_poll = loop.create_future()
        try:
            while True:
                # Polls start every poll_seconds (not poll_seconds after the last one ended): a slow poll
                # does not push the next one back; one that overran starts the next at once.
                due = max(due + self.poll_seconds, loop.time())
                await asyncio.sleep(due - loop.time())
                if not self._loaded or not self._guard.acquire(blocking=False):
                    continue  # not loaded yet, or (re)loading in the thread, which polls when it is done
                try:
                    await self.apoll()
                except Exception:
                    log.exception("camara.facts_poll_failed")
                finally:
                    self._guard.release()
                    done, self._next_poll = self._next_poll, loop.create_future()
                    done.set_result(None)  # the checks waiting for this poll look again
        finally:
            self._loop_polls = False
            done, self._next_poll = self._next_poll, None
            if done is not None:
                done.set_result(None)
            if self._aconnection is not None:
                connection, self._aconnection = self._aconnection, None
                await connection.close()

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
        if not self._loop_polls:
            self.poll()
        if time.monotonic() - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            self.prune()
