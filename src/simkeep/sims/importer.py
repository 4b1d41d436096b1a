"""Bulk import of SIM stock from CSV, and the machinery both bulk imports (SIMs, lines) share.

The file is checked first (readable, UTF-8, expected header) so that a bad file changes nothing. Then a
reader process parses and validates rows while this process writes the previous batch: one transaction per
batch with ids pre-assigned, loaded with one ``INSERT ... SELECT FROM json_each`` on SQLite and with COPY
into a temporary table on PostgreSQL. The insert is optimistic; when a unique constraint refuses it, the
batch is rolled back to a savepoint, its rows are classified (already present, conflict, duplicate of an
earlier line of the file) and the rest is inserted. See docs/imports.md.
"""

from __future__ import annotations

import codecs
import csv
import json
import multiprocessing
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import DomainError
from simkeep.identifiers import iccid_problem, imsi_problem

BATCH_ROWS = 50_000
MAX_ERRORS = 1000
SIM_COLUMNS = ("iccid", "imsi", "kind", "location", "store", "batch")
SIM_KINDS = frozenset({"physical", "esim"})
_LOCATIONS = frozenset({"warehouse", "store"})
NULL = "\\N"  # NULL in PostgreSQL's COPY text format
_PARALLEL_MIN_BYTES = 4 << 20  # below this a second process costs more than it saves
DEADLOCK_ATTEMPTS = 5
DEADLOCK_SQLSTATE = "40P01"


class ImportFileUnreadable(DomainError):
    """The file cannot be imported at all: missing, not UTF-8 text, holding NUL bytes, or wrongly headed."""

    code = "IMPORT_FILE_UNREADABLE"


@dataclass(frozen=True)
class RowError:
    """Why one line of the file was not imported. Never carries the value itself."""

    line: int
    field: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON."""
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass
class ImportResult:
    """The outcome of one import run."""

    file: str
    rows: int = 0
    imported: int = 0
    already_present: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    errors_omitted: int = 0
    created_plans: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when every row was imported or already present, 1 when some were rejected."""
        return 1 if self.rejected else 0

    def add_errors(self, errors: Iterable[RowError], *, cap: int = MAX_ERRORS) -> None:
        """Count rejected rows, keeping the first ``cap`` errors."""
        for error in errors:
            self.rejected += 1
            if len(self.errors) < cap:
                self.errors.append(error)
            else:
                self.errors_omitted += 1

    def counts(self) -> dict[str, Any]:
        """The counts, for the audit log and the summary."""
        out: dict[str, Any] = {
            "file": Path(self.file).name,
            "rows": self.rows,
            "imported": self.imported,
            "already_present": self.already_present,
            "rejected": self.rejected,
        }
        if self.created_plans:
            out["created_plans"] = self.created_plans
        return out

    def to_dict(self) -> dict[str, Any]:
        """Everything, as JSON."""
        rate = round(self.rows / self.seconds) if self.seconds > 0 else None
        return {
            **self.counts(),
            "created_plans": self.created_plans,
            "errors": [e.to_dict() for e in sorted(self.errors, key=lambda e: e.line)],
            "errors_omitted": self.errors_omitted,
            "seconds": round(self.seconds, 3),
            "rows_per_second": rate,
        }


@dataclass
class Batch:
    """Validated rows of one stretch of the file, ready for a writer."""

    rows: int  # data rows read, good and bad
    errors: list[RowError]
    lines: array[int]  # file line of each good row, in payload order
    payload: str  # JSON rows (SQLite) or COPY text (PostgreSQL)
    extra: Any = None


class RunLedger:
    """The ids this run inserted and the file line of each: tells "duplicate of line N" from "present"."""

    def __init__(self) -> None:
        self._bases: list[int] = []
        self._lines: list[array[int]] = []

    def add(self, base: int, lines: array[int]) -> None:
        """Ids ``base + i`` were given to the rows of ``lines[i]`` (bases only grow)."""
        self._bases.append(base)
        self._lines.append(lines)

    def mark(self) -> int:
        """A point to :meth:`rewind` to."""
        return len(self._bases)

    def rewind(self, mark: int) -> None:
        """Forget what was added since ``mark`` (its transaction was rolled back)."""
        del self._bases[mark:], self._lines[mark:]

    def line_of(self, row_id: int) -> int | None:
        """The file line of a row this run inserted, or None if it was there before."""
        i = bisect_right(self._bases, row_id) - 1
        if i < 0:
            return None
        offset = row_id - self._bases[i]
        lines = self._lines[i]
        return lines[offset] if offset < len(lines) else None


# --- reading the file -------------------------------------------------------------------------------------


def check_file(path: Path, columns: tuple[str, ...]) -> int:
    """Refuse a missing, non-UTF-8 or wrongly headed file before anything is written; count its rows."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ImportFileUnreadable(f"cannot open {path}: {exc.strerror}") from exc
    with handle:
        head = b""
        while b"\n" not in head:
            chunk = handle.read(65536)
            if not chunk:
                break
            head += chunk
        first, _, chunk = head.partition(b"\n")
        expected = ",".join(columns)
        if _decode_header(first) != expected:
            raise ImportFileUnreadable(f"line 1: the header must be exactly: {expected}")
        decoder = codecs.getincrementaldecoder("utf-8")()
        newlines, last = 1, b"\n"
        while chunk:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line = newlines + chunk[: exc.start].count(b"\n") + 1
                msg = f"line {line}: the file is not UTF-8 text; save it as UTF-8 and import again"
                raise ImportFileUnreadable(msg) from None
            if b"\x00" in chunk:
                line = newlines + chunk[: chunk.index(b"\x00")].count(b"\n") + 1
                raise ImportFileUnreadable(f"line {line}: the file contains a NUL byte")
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
            chunk = handle.read(1 << 20)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ImportFileUnreadable(f"line {newlines}: the file ends inside a UTF-8 character") from None
    return newlines - 1 + (last != b"\n")


def _decode_header(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileUnreadable("line 1: the file is not UTF-8 text") from None
    return ",".join(part.strip().lower() for part in text.strip().split(","))


UNCLOSED_QUOTE = "a quoted field is not closed on its line (no field may hold a line break)"
_CLOSE_QUOTE = '"\n'


def records(path: Path, fields: int) -> Iterator[tuple[int, list[str] | str]]:
    """Rows of ``fields`` values with their line numbers, or a malformed row's reason; blank lines skipped.

    Every record ends with its own physical line: no field of these files holds a line break, so a quote
    left open must not swallow the lines after it (they would vanish into one bad row and be numbered
    after its last line). When the CSV reader asks for more of an unfinished record it is handed a closing
    quote instead, and that row is reported as malformed; the next line is read as the next row. Any other
    CSV error costs one row too, so a broken row never stops an import half-way through.
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        next(handle, None)  # the header, checked by check_file
        taken = 0  # physical lines the reader has taken for the current record
        broken = False

        def feed() -> Iterator[str]:
            nonlocal taken, broken
            for text in handle:
                if taken:
                    broken = True
                    yield _CLOSE_QUOTE
                taken = 1
                yield text
            if taken:
                broken = True
                yield _CLOSE_QUOTE

        reader = csv.reader(feed())
        line = 1
        while True:
            taken = 0
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line += 1
                yield line, f"malformed CSV ({exc})"
                continue
            line += 1
            if broken:
                broken = False
                yield line, UNCLOSED_QUOTE
            elif len(row) == fields:
                yield line, row
            elif row:
                yield line, f"expected {fields} fields, found {len(row)}"


def copy_text(value: str) -> str:
    """A value escaped for PostgreSQL's COPY text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


# --- running the reader beside the writer -----------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    unreadable: bool
    message: str


def _produce(make: Callable[[], Iterator[Batch]], send: Any) -> None:
    try:
        for batch in make():
            send.send(batch)
        send.send(None)
    except ImportFileUnreadable as exc:
        send.send(_Failure(True, exc.message))
    except Exception as exc:
        send.send(_Failure(False, f"{type(exc).__name__}: {exc}"))
    finally:
        send.close()


def batches_of(make: Callable[[], Iterator[Batch]], *, parallel: bool) -> Iterator[Batch]:
    """The batches of ``make()``, produced by a forked reader process when ``parallel`` (and POSIX)."""
    if not parallel or "fork" not in multiprocessing.get_all_start_methods():
        yield from make()
        return
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    reader = ctx.Process(target=_produce, args=(make, send), name="simkeep-import-reader", daemon=True)
    reader.start()
    send.close()
    try:
        while True:
            item = receive.recv()
            if item is None:
                return
            if isinstance(item, _Failure):
                if item.unreadable:
                    raise ImportFileUnreadable(item.message)
                raise RuntimeError(f"the import reader failed: {item.message}")
            yield item
    finally:
        if reader.is_alive():
            reader.terminate()
        reader.join()
        receive.close()


def want_parallel(path: Path, parallel: bool | None) -> bool:
    """Use a reader process for files big enough to gain from it, unless told."""
    return path.stat().st_size >= _PARALLEL_MIN_BYTES if parallel is None else parallel


def sqlite_now() -> str:
    """Now, as SQLAlchemy's SQLite DateTime stores it (naive UTC, microseconds)."""
    return utcnow().replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def driver(conn: Connection) -> Any:
    """The DBAPI connection under an SQLAlchemy connection."""
    return cast(Any, conn.connection.driver_connection)


def pg_reserve_ids(cur: Any, table: str, n: int) -> int:
    """Reserve ``n`` consecutive ids of ``table`` (locked by the caller) and return the first."""
    cur.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - table names are constants
        f"GREATEST(nextval(pg_get_serial_sequence('{table}', 'id')), "
        f"(SELECT COALESCE(max(id), 0) + 1 FROM {table})) + %s - 1)",
        (n,),
    )
    return int(cur.fetchone()[0]) - n + 1


def sqlite_next_id(cur: Any, table: str) -> int:
    """The first free id of ``table`` inside the write transaction."""
    cur.execute(f"SELECT COALESCE(max(id), 0) + 1 FROM {table}")  # noqa: S608 - constant table names
    return int(cur.fetchone()[0])


class Writer(Protocol):
    """Loads one batch and says what became of its rows."""

    def write(self, batch: Batch) -> tuple[int, int, list[RowError]]:
        """Insert one batch; return (imported, already present, errors)."""
        ...


def write_batch(
    conn: Connection,
    write: Callable[[Any], tuple[int, int, list[RowError]]],
    *,
    save: Callable[[], Any],
    restore: Callable[[Any], None],
) -> tuple[int, int, list[RowError]]:
    """Run ``write(cursor)`` in one transaction, and again when PostgreSQL makes it a deadlock's victim.

    A session that locks the same tables in another order (a database-wide ANALYZE inside a transaction
    does) can deadlock with a batch's ``LOCK TABLE``. The batch is then rolled back whole, so it runs again
    once ``restore(save())`` has put back what the writer had noted of it.
    """
    attempt = 1
    while True:
        saved = save()
        try:
            with conn.begin():
                return write(driver(conn).cursor())
        except Exception as exc:
            restore(saved)
            if attempt >= DEADLOCK_ATTEMPTS or not deadlocked(exc):
                raise
            attempt += 1


def deadlocked(exc: BaseException) -> bool:
    """Whether the database broke a deadlock by failing this transaction (SQLSTATE 40P01)."""
    return DEADLOCK_SQLSTATE in (
        getattr(exc, "sqlstate", None),
        getattr(getattr(exc, "orig", None), "sqlstate", None),
    )


def load_batches(
    result: ImportResult,
    batches: Iterable[Batch],
    writer: Writer,
    on_progress: Callable[[int, int], None] | None,
    total: int,
) -> None:
    """Write every batch and add up what became of its rows."""
    for batch in batches:
        imported, present, errors = writer.write(batch)
        result.rows += batch.rows
        result.imported += imported
        result.already_present += present
        result.add_errors(batch.errors)
        result.add_errors(errors)
        if on_progress is not None:
            on_progress(result.rows, total)


def record_run(engine: Engine, *, actor: str, action: str, result: ImportResult) -> None:
    """One audit entry for the run, with its counts."""
    from simkeep.audit.service import record

    with Session(engine) as session, session.begin():
        record(
            session,
            actor=actor,
            action=action,
            subject_type="import",
            subject_id=Path(result.file).name[:64],
            data=result.counts(),
        )


# --- SIM stock --------------------------------------------------------------------------------------------


def check_sim_rows(
    path: Path, *, stores: dict[str, int], postgres: bool, batch_rows: int = BATCH_ROWS
) -> Iterator[Batch]:
    """Parse and validate SIM stock rows; yield batches of good rows and the errors of the bad ones."""
    good: list[list[Any]] = []
    lines: array[int] = array("i")
    errors: list[RowError] = []
    seen_iccid: dict[str, int] = {}
    seen_imsi: dict[str, int] = {}
    count = 0

    def flush() -> Batch:
        if postgres:
            payload = "".join(
                f"{k}\t{r[0]}\t{r[1]}\t{r[2]}\t{r[3]}\t{NULL if r[4] is None else r[4]}\t{copy_text(r[5])}\n"
                for k, r in enumerate(good)
            )
        else:
            payload = json.dumps(good, ensure_ascii=False)
        return Batch(count, errors, lines, payload)

    for line, raw in records(path, len(SIM_COLUMNS)):
        count += 1
        if isinstance(raw, str):
            errors.append(RowError(line, "row", raw))
        else:
            problem = _sim_problem(raw, stores)
            if problem is not None and any(value != value.strip() for value in raw):
                raw = [value.strip() for value in raw]  # noqa: PLW2901 - padding tolerated, at no cost to clean rows
                problem = _sim_problem(raw, stores)
            if problem is None:
                if raw[0] in seen_iccid:
                    problem = ("iccid", f"the ICCID is also on line {seen_iccid[raw[0]]}")
                elif raw[1] in seen_imsi:
                    problem = ("imsi", f"the IMSI is also on line {seen_imsi[raw[1]]}")
                else:
                    seen_iccid[raw[0]] = seen_imsi[raw[1]] = line
            if problem is None:
                good.append([raw[0], raw[1], raw[2], raw[3], stores.get(raw[4]), raw[5]])
                lines.append(line)
            else:
                errors.append(RowError(line, *problem))
        if count >= batch_rows:
            yield flush()
            good, lines, errors, count = [], array("i"), [], 0
            seen_iccid.clear()
            seen_imsi.clear()
    if count:
        yield flush()


def _sim_problem(  # noqa: PLR0911 - one early return per field, in the order the file has them
    row: list[str], stores: dict[str, int]
) -> tuple[str, str] | None:
    iccid, imsi, kind, location, store, label = row
    problem = iccid_problem(iccid)
    if problem:
        return "iccid", problem
    problem = imsi_problem(imsi)
    if problem:
        return "imsi", problem
    if kind not in SIM_KINDS:
        return "kind", "must be physical or esim"
    if location not in _LOCATIONS:
        return "location", "must be warehouse or store"
    if location == "store":
        if not store:
            return "store", "a SIM kept in a store needs the store's code"
        if store not in stores:
            return "store", "no store has this code"
    elif store:
        return "store", "must be empty for a SIM kept in the warehouse"
    if len(label) > 64:
        return "batch", "at most 64 characters"
    return None


_SIM_INSERT_SQLITE = (
    "INSERT INTO sims (id, iccid, imsi, kind, status, location, store_id, batch, created_at, updated_at) "
    "SELECT ? + j.key, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), "
    "json_extract(j.value, '$[2]'), 'in_stock', json_extract(j.value, '$[3]'), "
    "json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'), ?, ? FROM json_each(?) AS j"
)
_SIM_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS sk_import_sims (k integer, iccid text, imsi text, kind text, "
    "location text, store_id integer, batch text) ON COMMIT DELETE ROWS"
)
_SIM_INSERT_PG = (
    "INSERT INTO sims (id, iccid, imsi, kind, status, location, store_id, batch, created_at, updated_at) "
    "SELECT %s + k, iccid, imsi, kind, 'in_stock', location, store_id, batch, %s, %s FROM sk_import_sims"
)


class SimWriter:
    """Writes batches of SIM stock in one transaction each, classifying rows a unique key refuses."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.ledger = RunLedger()

    def write(self, batch: Batch) -> tuple[int, int, list[RowError]]:
        """Insert one batch; return (imported, already present, errors)."""
        if not batch.lines:
            return 0, 0, []
        write = self._write_pg if self.postgres else self._write_sqlite
        return write_batch(
            self.conn, lambda cur: write(cur, batch), save=self.ledger.mark, restore=self.ledger.rewind
        )

    def _write_sqlite(self, cur: Any, batch: Batch) -> tuple[int, int, list[RowError]]:
        import sqlite3

        now = sqlite_now()
        base = sqlite_next_id(cur, "sims")
        cur.execute("SAVEPOINT sk_batch")
        try:
            cur.execute(_SIM_INSERT_SQLITE, (base, now, now, batch.payload))
            self.ledger.add(base, batch.lines)
            return len(batch.lines), 0, []
        except sqlite3.IntegrityError:
            cur.execute("ROLLBACK TO sk_batch")
        finally:
            cur.execute("RELEASE sk_batch")
        rows = json.loads(batch.payload)
        by_iccid = {r[0]: k for k, r in enumerate(rows)}
        by_imsi = {r[1]: k for k, r in enumerate(rows)}
        probe = "SELECT j.value, s.id, s.iccid, s.imsi FROM json_each(?) AS j CROSS JOIN sims AS s "
        cur.execute(probe + "WHERE s.iccid = j.value", (json.dumps(list(by_iccid)),))
        found_iccid = {by_iccid[v]: (sid, imsi == rows[by_iccid[v]][1]) for v, sid, _, imsi in cur}
        cur.execute(probe + "WHERE s.imsi = j.value", (json.dumps(list(by_imsi)),))
        found_imsi = {by_imsi[v]: sid for v, sid, iccid, _ in cur if iccid != rows[by_imsi[v]][0]}
        drop, present, errors = self._classify(batch.lines, found_iccid, found_imsi)
        keep = [k for k in range(len(rows)) if k not in drop]
        kept_lines = array("i", (batch.lines[k] for k in keep))
        if keep:
            payload = json.dumps([rows[k] for k in keep], ensure_ascii=False)
            cur.execute(_SIM_INSERT_SQLITE, (base, now, now, payload))
            self.ledger.add(base, kept_lines)
        return len(keep), present, errors

    def _write_pg(self, cur: Any, batch: Batch) -> tuple[int, int, list[RowError]]:
        import psycopg

        now = utcnow()
        n = len(batch.lines)
        cur.execute("SET LOCAL client_min_messages = warning")
        cur.execute(_SIM_STAGE)
        cur.execute("LOCK TABLE sims IN SHARE ROW EXCLUSIVE MODE")
        base = pg_reserve_ids(cur, "sims", n)
        with cur.copy(
            "COPY sk_import_sims (k, iccid, imsi, kind, location, store_id, batch) FROM STDIN"
        ) as cp:
            cp.write(batch.payload)
        self.ledger.add(base, batch.lines)
        cur.execute("SAVEPOINT sk_batch")
        try:
            cur.execute(_SIM_INSERT_PG, (base, now, now))
            return n, 0, []
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT sk_batch")
        cur.execute(
            "SELECT st.k, s.id, s.imsi = st.imsi FROM sk_import_sims st JOIN sims s ON s.iccid = st.iccid"
        )
        found_iccid = {k: (sid, same) for k, sid, same in cur.fetchall()}
        cur.execute(
            "SELECT st.k, s.id FROM sk_import_sims st JOIN sims s ON s.imsi = st.imsi AND s.iccid <> st.iccid"
        )
        found_imsi = dict(cur.fetchall())
        drop, present, errors = self._classify(batch.lines, found_iccid, found_imsi)
        cur.execute("DELETE FROM sk_import_sims WHERE k = ANY(%s)", (sorted(drop),))
        cur.execute(_SIM_INSERT_PG, (base, now, now))
        return n - len(drop), present, errors

    def _classify(
        self, lines: array[int], found_iccid: dict[int, tuple[int, bool]], found_imsi: dict[int, int]
    ) -> tuple[set[int], int, list[RowError]]:
        """Which rows (by position) not to insert, how many are already present, and the errors."""
        drop: set[int] = set()
        present = 0
        errors: list[RowError] = []
        for k, (sid, same_imsi) in found_iccid.items():
            drop.add(k)
            earlier = self.ledger.line_of(sid)
            if earlier is not None:
                errors.append(RowError(lines[k], "iccid", f"the ICCID is also on line {earlier}"))
            elif same_imsi:
                present += 1
            else:
                errors.append(RowError(lines[k], "imsi", "the ICCID is already registered with another IMSI"))
        for k, sid in found_imsi.items():
            if k in drop:
                continue
            drop.add(k)
            earlier = self.ledger.line_of(sid)
            reason = (
                f"the IMSI is also on line {earlier}"
                if earlier is not None
                else "the IMSI already belongs to another SIM"
            )
            errors.append(RowError(lines[k], "imsi", reason))
        return drop, present, errors


def load_stores(conn: Connection) -> dict[str, int]:
    """Store codes and their ids."""
    from sqlalchemy import select

    from simkeep.models import Store

    with conn.begin():
        return dict(conn.execute(select(Store.code, Store.id)).all())


def import_sims(
    engine: Engine,
    settings: Settings,  # noqa: ARG001 - same signature as the lines import; nothing secret here
    path: Path,
    *,
    actor: str = "cli",
    batch_rows: int = BATCH_ROWS,
    parallel: bool | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import SIM stock from ``path``; raises :class:`ImportFileUnreadable` before writing anything."""
    started = time.perf_counter()
    total = check_file(path, SIM_COLUMNS)
    result = ImportResult(file=str(path))
    with engine.connect() as conn:
        stores = load_stores(conn)
        postgres = conn.dialect.name == "postgresql"
        writer = SimWriter(conn)

        def make() -> Iterator[Batch]:
            return check_sim_rows(path, stores=stores, postgres=postgres, batch_rows=batch_rows)

        load_batches(
            result, batches_of(make, parallel=want_parallel(path, parallel)), writer, on_progress, total
        )
    result.seconds = time.perf_counter() - started
    record_run(engine, actor=actor, action="sims.imported", result=result)
    return result
