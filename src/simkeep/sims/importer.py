"""Bulk import of SIM stock from CSV, and the machinery both bulk imports (SIMs, lines) share.

The file is checked first (readable, UTF-8, expected header) so that a bad file changes nothing. Then a
reader process parses and validates rows while this process writes the previous batch: one transaction per
batch with ids pre-assigned, loaded on SQLite with ``INSERT ... SELECT`` from staging tables the reader
built in a small database of its own (:func:`staged_database`), and with COPY on PostgreSQL (SIM stock
straight into ``sims``, lines into temporary tables). The insert is optimistic;
when a unique constraint refuses it, the batch is rolled back to a savepoint, its rows are classified
(already present, conflict, duplicate of an earlier line of the file) and the rest is inserted. A chunk of
stock lines is checked column by column (:mod:`simkeep.sims.columns`) and only the rows that are not plainly
good go through the CSV reader and the per-field checks; a batch's secrets are sealed together. See
docs/imports.md.
"""

from __future__ import annotations

import codecs
import csv
import gc
import json
import multiprocessing
import os
import threading
import time
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar, cast

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import DomainError
from simkeep.identifiers import iccid_problem, imsi_problem

if TYPE_CHECKING:
    from simkeep.identity.vault import Vault

BATCH_ROWS = 50_000
MAX_ERRORS = 1000
SIM_COLUMNS = ("iccid", "imsi", "kind", "location", "store", "batch")
AUTH_ALGORITHMS = ("milenage", "comp128v1", "comp128v2", "comp128v3")
#: The stock file's headers: the SIM, optionally followed by its secrets (``ki`` names a COMP128 key).
SIM_HEADERS = (
    SIM_COLUMNS,
    (*SIM_COLUMNS, "auth_algorithm", "k", "opc"),
    (*SIM_COLUMNS, "auth_algorithm", "k"),
    (*SIM_COLUMNS, "auth_algorithm", "ki"),
    (*SIM_COLUMNS, "auth_algorithm", "ki", "opc"),
)
SIM_HEADER_RULE = f"{','.join(SIM_COLUMNS)}, optionally followed by auth_algorithm,k,opc"
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
    payload: Any  # COPY text (PostgreSQL); on SQLite JSON rows (stock) or tab-separated rows (lines)
    extra: Any = None


class RunLedger:
    """The ids this run inserted and the file line of each: tells "duplicate of line N" from "present"."""

    def __init__(self) -> None:
        self._bases: list[int] = []
        self._lines: list[array[int]] = []

    def add(self, base: int, lines: array[int], dropped: Iterable[int] = ()) -> None:
        """Ids ``base + i`` were given to the rows of ``lines[i]`` (bases only grow), except the ``dropped``
        positions, which were refused: their ids stayed free, and on SQLite, where the next batch (of this
        run or of another run beside it) starts after the highest id taken, another run may take them."""
        if dropped:
            lines = array("i", lines)
            for k in dropped:
                lines[k] = _NOT_INSERTED
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
        line = lines[offset] if offset < len(lines) else _NOT_INSERTED
        return line if line != _NOT_INSERTED else None


_NOT_INSERTED = 0  # in a ledger's lines: a refused row's position (file lines start at 1)


# --- reading the file -------------------------------------------------------------------------------------


def check_file(path: Path, columns: tuple[str, ...]) -> int:
    """Refuse a missing, non-UTF-8 or wrongly headed file before anything is written; count its rows."""
    return check_headed_file(path, (columns,), ",".join(columns))[1]


def check_headed_file(
    path: Path, headers: Sequence[tuple[str, ...]], rule: str
) -> tuple[tuple[str, ...], int]:
    """:func:`check_file` for a file that may have one of several ``headers``: the one it has, its rows."""
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
        found = _decode_header(first)
        header = next((h for h in headers if ",".join(h) == found), None)
        if header is None:
            raise ImportFileUnreadable(f"line 1: the header must be exactly: {rule}")
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
    return header, newlines - 1 + (last != b"\n")


def _decode_header(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileUnreadable("line 1: the file is not UTF-8 text") from None
    return ",".join(part.strip().lower() for part in text.strip().split(","))


UNCLOSED_QUOTE = "a quoted field is not closed on its line (no field may hold a line break)"
_CLOSE_QUOTE = '"\n'


@dataclass(frozen=True)
class Part:
    """Which stretches of the file one reader reads: chunks ``index``, ``index + of``, ... of ``size`` lines.

    A chunk is ``size`` physical data lines (the header is line 1; chunk 0 starts at line 2) and becomes one
    batch. Records never span lines, so chunks are read independently, by several readers at once.
    """

    size: int
    chunks: int  # how many chunks the file has
    index: int = 0
    of: int = 1


def parts_of(total_lines: int, size: int, readers: int) -> list[Part]:
    """The file's ``total_lines`` data lines cut into chunks of ``size``, dealt to ``readers`` readers."""
    chunks = -(-total_lines // size)
    return [Part(size, chunks, index, readers) for index in range(readers)]


def one_record(text: str, fields: int) -> list[str] | str | None:
    """One physical line read by the CSV reader: its values, why it is malformed, or None if blank.

    Every record ends with its own physical line (``\\n``): no field of these files holds a line break, so
    a quote left open must not swallow the lines after it (they would vanish into one bad row and be
    numbered after its last line). When the CSV reader asks for more of an unfinished record it is handed a
    closing quote instead, and the row is reported as malformed. Any other CSV error costs this row only.
    """
    reader = csv.reader((text, _CLOSE_QUOTE))
    try:
        row = next(reader)
    except StopIteration:  # pragma: no cover - the reader always has the line itself
        return None
    except csv.Error as exc:
        return f"malformed CSV ({exc})"
    if reader.line_num > 1:  # it needed the closing quote: the line left a quote open
        return UNCLOSED_QUOTE
    if len(row) == fields:
        return row
    return f"expected {fields} fields, found {len(row)}" if row else None


def chunk_texts(path: Path, fields: int, part: Part) -> Iterator[tuple[int, list[str]]]:
    """Each chunk ``part`` owns, in file order: the number of its first line and its physical lines, as read.

    The other readers' chunks are passed over without a Python step per line. A record past the chunks
    counted before the import (the file grew meanwhile) is refused: the readers split the file by the lines
    counted when it was checked.
    """
    with path.open(encoding="utf-8-sig", newline="\n") as handle:
        next(handle, None)  # the header, checked by check_file
        for chunk in range(part.chunks):
            lines = islice(handle, part.size)
            if chunk % part.of == part.index:
                yield 2 + chunk * part.size, list(lines)
            else:
                deque(lines, maxlen=0)
        for number, text in enumerate(handle, 2 + part.chunks * part.size):
            if one_record(text, fields) is not None:
                msg = f"line {number} lies past the lines counted before the import: the file changed"
                raise ImportFileUnreadable(msg)


def copy_text(value: str) -> str:
    """A value escaped for PostgreSQL's COPY text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a reader builds a batch of rows, which hold no cycles.

    A batch is tens of thousands of small lists and tuples; every few hundred of them would start a
    collection that walks all the rows built so far, for nothing (a tenth of a reader's time, measured).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- running the readers beside the writer ----------------------------------------------------------------

#: Reader processes for a big file. Two keep up with either database's writer on a two-core machine,
#: where the writer (SQLite) or the server (PostgreSQL) takes the other core.
READERS = 2
#: How much lower the readers' scheduling priority is than the writer's (``nice``; 19 at most). The readers
#: run ahead of the writer (a pipe holds the next batch), so where they and the writer's database work share
#: the cores, what the readers take first only delays the writer: the writer (SQLite), or the PostgreSQL
#: server process working for it, takes a core whenever it can, and the readers run in what is left. Only
#: CPU time is yielded: a reader still runs whenever a core is free. A PostgreSQL first load of 1,000,000
#: lines, alternating with the readers at the writer's priority: shorter in each of seven pairs, by 0.3-2.0
#: s of 22-27 s, 1.2 s on average (the readers had taken half of the two cores while the server waited for
#: one); SQLite lines and SIM stock on either database within the runs' spread (see docs/imports.md).
READER_NICENESS = 10


@dataclass(frozen=True)
class _Failure:
    unreadable: bool
    message: str


def _produce(read: Callable[[Part], Iterator[Batch]], part: Part, send: Any) -> None:
    with suppress(OSError):  # lowering one's own priority is always allowed; if not, it runs as it is
        os.nice(READER_NICENESS)
    try:
        for batch in read(part):
            send.send(batch)
        send.send(None)
    except ImportFileUnreadable as exc:
        send.send(_Failure(True, exc.message))
    except Exception as exc:
        send.send(_Failure(False, f"{type(exc).__name__}: {exc}"))
    finally:
        send.close()


def may_fork_readers() -> bool:
    """Whether reader processes may be forked here: where the platform forks (POSIX), and only from the main
    thread; otherwise the file is read in this process.

    A forked child has only the thread that forked it, and every lock as it was at that moment: a lock held
    by another thread (SQLite's own mutexes, taken for each of its allocations, say) stays held forever in
    the child. The readers stage batches with SQLite, so a reader forked while a sibling thread was inside
    SQLite waits forever (seen: two imports run on threads side by side). A process that runs imports on
    worker threads (a server) has such siblings, so only the main thread forks; a command's main thread has
    none that use SQLite (the progress bar's refresh thread draws only).
    """
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.current_thread() is threading.main_thread()
    )


def batches_of(
    read: Callable[[Part], Iterator[Batch]], *, total_lines: int, batch_rows: int, readers: int
) -> Generator[Batch]:
    """The batches of the file in file order, one per chunk of ``batch_rows`` lines.

    With ``readers`` > 1 (and POSIX), that many forked processes parse chunks in turn, each sending its
    batches down its own pipe; the batches are taken from the pipes in chunk order, so the writer sees the
    file in order. A pipe holds about one batch, so memory stays flat however big the file.
    """
    parts = parts_of(total_lines, batch_rows, readers)
    if readers <= 1 or not may_fork_readers():
        yield from read(parts_of(total_lines, batch_rows, 1)[0])
        return
    with _reader_pipes(read, parts) as pipes:
        for chunk in range(parts[0].chunks):
            batch = _received(pipes[chunk % readers].recv())
            if batch is None:  # pragma: no cover - a reader's bug, not bad input
                msg = "an import reader stopped before the end of its chunks"
                raise RuntimeError(msg)
            yield batch
        for receive in pipes:
            if _received(receive.recv()) is not None:  # pragma: no cover - a reader's bug, not bad input
                msg = "an import reader sent more batches than the file has chunks"
                raise RuntimeError(msg)


T = TypeVar("T")


def in_turns(produce: Callable[[int, int], Iterator[T]], *, readers: int) -> Iterator[T]:
    """What ``produce(index, readers)`` yields for each reader ``index``, taken in turns (reader 0's first
    item, reader 1's first, ..., reader 0's second, ...) until a reader has no item at its turn; each
    reader a forked process (where :func:`may_fork_readers`) sending its items down its own pipe while the
    caller works on the item before. With ``readers`` < 1, or where no reader may fork, ``produce(0, 1)``
    runs here.

    The producer deals the items: reader ``index`` makes items ``index``, ``index + readers``, ...; so the
    caller gets them in order, and when one reader ends at its turn every other one has ended too (checked).
    A pipe holds about one item, so memory stays flat; a failure of a reader is raised here, as
    :func:`batches_of` raises it.
    """
    if readers < 1 or not may_fork_readers():
        yield from produce(0, 1)
        return
    parts = [Part(1, 1, index, readers) for index in range(readers)]
    with _reader_pipes(lambda part: produce(part.index, part.of), parts) as pipes:
        turn = 0
        while (item := _received(pipes[turn % readers].recv())) is not None:
            yield item
            turn += 1
        for later in range(turn + 1, turn + readers):
            if _received(pipes[later % readers].recv()) is not None:  # pragma: no cover - a reader's bug
                msg = "an import reader sent an item after the one before it had ended"
                raise RuntimeError(msg)


@contextmanager
def _reader_pipes(read: Callable[[Part], Iterator[Any]], parts: Sequence[Part]) -> Iterator[list[Any]]:
    """One forked reader process per part, each sending what ``read`` yields for its part down its own pipe
    (then None, or its failure); the receiving ends in part order. Leaving stops the readers that are still
    running and closes the pipes."""
    ctx = multiprocessing.get_context("fork")
    pipes, processes = [], []
    try:
        for part in parts:
            receive, send = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=_produce,
                args=(read, part, send),
                name=f"simkeep-import-reader-{part.index}",
                daemon=True,
            )
            process.start()
            send.close()
            pipes.append(receive)
            processes.append(process)
        yield pipes
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        for receive in pipes:
            receive.close()


def _received(item: Any) -> Any:
    """A batch from a reader's pipe (None at its end); a reader's failure raised here."""
    if isinstance(item, _Failure):
        if item.unreadable:
            raise ImportFileUnreadable(item.message)
        raise RuntimeError(f"the import reader failed: {item.message}")
    return item


def readers_for(path: Path, parallel: bool | None) -> int:
    """Reader processes: :data:`READERS` for files big enough to gain from them, unless told."""
    return READERS if reads_in_parallel(path, parallel) else 1


def reads_in_parallel(path: Path, parallel: bool | None) -> bool:
    """``parallel``, or when not told, whether the file is big enough for reader processes to gain."""
    return path.stat().st_size >= _PARALLEL_MIN_BYTES if parallel is None else parallel


#: SQLite page cache of an import's connection, in KiB: the random-order indexes of a million lines (numbers,
#: document hashes) stay in memory instead of being read back from the file for every insert.
SQLITE_IMPORT_CACHE_KIB = 256 * 1024


@contextmanager
def bulk_connection(conn: Connection, *, own_references: bool) -> Iterator[bool]:
    """Set an import's connection up for bulk writes and put it back as it was; yields ``own_references``.

    SQLite gets a large page cache and keeps temporary tables in memory (they are dropped afterwards). With
    ``own_references`` (the writer makes or finds every row its rows refer to, in the same transaction,
    with the tables locked against other writers) the database's own re-check of each foreign key is
    skipped: ``foreign_keys`` off on SQLite, the ``replica`` session role around the inserts on PostgreSQL
    (as ``pg_restore --disable-triggers`` does). PostgreSQL allows that role only to superusers or roles
    granted it; elsewhere the checks run and this yields False.
    """
    raw = driver(conn)
    if conn.dialect.name != "sqlite":
        yield own_references and _may_skip_pg_checks(conn)
        return
    cache = raw.execute("PRAGMA cache_size").fetchone()[0]
    keys = raw.execute("PRAGMA foreign_keys").fetchone()[0]
    temp = raw.execute("PRAGMA temp_store").fetchone()[0]
    raw.execute(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}")
    raw.execute("PRAGMA temp_store = MEMORY")
    if own_references:
        raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield own_references
    finally:
        raw.execute(f"PRAGMA cache_size = {int(cache)}")
        raw.execute(f"PRAGMA foreign_keys = {int(keys)}")
        raw.execute(f"PRAGMA temp_store = {int(temp)}")  # which drops the import's temporary tables


#: SQLite: the schema a batch's staging tables are attached as. The reader builds them, in a small database
#: of its own (:func:`staged_database`), and the writer attaches that in place of the batch before
#: (:func:`sqlite_stage`): reading rows out of JSON in the writer, whose one core sets SQLite's pace, cost
#: about as much as inserting them. Statements name the staging tables unqualified, which SQLite resolves
#: to this schema.
SQLITE_STAGE_SCHEMA = "sk_stage"


@contextmanager
def sqlite_stage(conn: Connection) -> Iterator[None]:
    """On SQLite, an in-memory schema attached for the batches' staging tables (see :func:`staged_database`),
    detached on the way out; nothing on PostgreSQL, whose staging tables are temporary ones."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = driver(conn)
    raw.execute(f"ATTACH DATABASE ':memory:' AS {SQLITE_STAGE_SCHEMA}")
    try:
        yield
    finally:
        raw.execute(f"DETACH DATABASE {SQLITE_STAGE_SCHEMA}")


def staged_database(*tables: tuple[str, str, Iterable[Sequence[Any]]]) -> bytes:
    """A batch's staging tables for SQLite's writer, serialised: each ``(create, insert, rows)`` made in a
    new in-memory database, which the writer attaches as :data:`SQLITE_STAGE_SCHEMA`.

    Built in the reader process, so the writer only attaches it; sending the rows as Python values would
    cost a pickle and an unpickle of every value on top (a fifth of the lines writer's time, measured).

    Every table is created before any row goes in, so each batch's database has the same schema, down to
    the pages the tables start on. It must: attaching the next batch's database leaves the schema's
    version number as it was, so the writer's cached statements are not prepared again and read the
    tables from the pages they found them on in the first batch.
    """
    import sqlite3

    stage = sqlite3.connect(":memory:", isolation_level=None)
    try:
        stage.execute("PRAGMA journal_mode = OFF")
        stage.execute("BEGIN")
        for create, _, _ in tables:
            stage.execute(create)
        for _, insert, rows in tables:
            _insert_rows(stage, insert, rows)
        stage.execute("COMMIT")
        return stage.serialize()
    finally:
        stage.close()


#: Rows per statement when a staging table is filled (see :func:`_insert_rows`).
STAGE_ROWS_PER_INSERT = 64


def _insert_rows(stage: Any, insert: str, rows: Iterable[Sequence[Any]]) -> None:
    """``stage.executemany(insert, rows)`` for an ``INSERT ... VALUES (?, ...)``, done with
    :data:`STAGE_ROWS_PER_INSERT` rows to a statement (``VALUES (...), (...), ...``): each statement run costs
    a step through the driver and SQLite's statement reset, which a row alone paid for; this halves the
    readers' staging (0.10 s against 0.20 s for 200,000 rows of four values, measured). Every row must have
    as many values as the statement has parameters (checked: a short row would shift every value after it)."""
    head, _, values = insert.rpartition(" VALUES ")
    width = values.count("?")
    table = rows if isinstance(rows, list) else list(rows)
    if table and set(map(len, table)) != {width}:
        msg = f"staging rows must have {width} values each"
        raise ValueError(msg)
    flat = list(chain.from_iterable(table))
    step = width * STAGE_ROWS_PER_INSERT
    whole = len(flat) // step * step
    if whole:
        many = f"{head} VALUES {', '.join([values] * STAGE_ROWS_PER_INSERT)}"
        stage.executemany(many, (flat[i : i + step] for i in range(0, whole, step)))
    stage.executemany(insert, (flat[i : i + width] for i in range(whole, len(flat), width)))


def _may_skip_pg_checks(conn: Connection) -> bool:
    from sqlalchemy.exc import DBAPIError

    try:
        with conn.begin():
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    except DBAPIError:
        return False
    return True


def sqlite_now() -> str:
    """Now, as SQLAlchemy's SQLite DateTime stores it (naive UTC, microseconds)."""
    return utcnow().replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def driver(conn: Connection) -> Any:
    """The DBAPI connection under an SQLAlchemy connection."""
    return cast(Any, conn.connection.driver_connection)


def pg_reserve_ids(cur: Any, table: str, n: int, *, past_rows: bool = True) -> int:
    """Reserve ``n`` consecutive ids of ``table`` (locked by the caller) and return the first.

    The ids start past the table's sequence and, with ``past_rows``, past its highest id too (a row written
    with an id of its own does not move the sequence). A caller whose table holds only rows with ids it
    reserved itself passes False: without an index on ``id`` (a first load drops some primary keys) the
    highest id is a scan of the whole table, once a batch.
    """
    beyond = f", (SELECT COALESCE(max(id), 0) + 1 FROM {table})" if past_rows else ""  # noqa: S608 - constant
    cur.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        f"GREATEST(nextval(pg_get_serial_sequence('{table}', 'id')){beyond}) + %s - 1)",
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


# Luhn over four digits at once: doubled, plain, doubled, plain (an ICCID padded to 20 digits on the left).
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_LUHN4 = {
    f"{n:04d}": _DOUBLED[n // 1000] + n // 100 % 10 + _DOUBLED[n // 10 % 10] + n % 10 for n in range(10_000)
}
_ICCID_CHARS = frozenset("0123456789")
_ICCID_LENGTHS = (19, 20)


def fast_iccid_problem(iccid: str) -> str | None:
    """:func:`simkeep.identifiers.iccid_problem` for bulk imports: a clean ICCID costs half the time.

    The Luhn sum of a 19 or 20 digit ICCID is read four digits at a time from a table; anything else is
    judged (and explained) by ``iccid_problem`` itself.
    """
    if len(iccid) in _ICCID_LENGTHS and iccid.startswith("89") and _ICCID_CHARS.issuperset(iccid):
        d = iccid if len(iccid) == 20 else "0" + iccid
        t = _LUHN4
        if (t[d[:4]] + t[d[4:8]] + t[d[8:12]] + t[d[12:16]] + t[d[16:]]) % 10 == 0:
            return None
    return iccid_problem(iccid)


Sealer = Callable[[Sequence[tuple[str, str, str | None]]], list[str]]  # (iccid, k, opc)s -> sealed texts


def make_sealer(vault: Vault) -> Sealer:
    """Seal the checked secrets of a batch of SIMs with ``vault``, as :func:`~simkeep.sims.secrets.seal_auth`.

    The import has checked the keys already (:func:`_auth_of`), so no ``SimAuth`` is built per row; the
    batch is sealed by :func:`simkeep.sims.secrets.seal_many`, and the tests open what it seals.
    """
    from simkeep.sims.secrets import seal_many

    return lambda secrets: seal_many(vault, secrets)


def check_sim_rows(
    path: Path,
    part: Part,
    *,
    stores: dict[str, int],
    postgres: bool,
    columns: tuple[str, ...] = SIM_COLUMNS,
    seal: Sealer | None = None,
) -> Iterator[Batch]:
    """Parse and validate the SIM stock rows of ``part``; one batch per chunk, good rows and errors.

    Each chunk is checked column by column (:func:`~simkeep.sims.columns.stock_columns`); the rows that are
    not plainly good are parsed and checked one by one (:func:`_stock_row`), which names their problem or
    accepts them. With the secret columns (``columns`` longer than :data:`SIM_COLUMNS`), a row's secrets
    are checked here and the batch's are sealed at once, by ``seal``, so that no batch, message or log
    carries them in clear.
    """
    if len(columns) > len(SIM_COLUMNS) and seal is None:
        msg = "a file with secret columns needs a sealer"
        raise ValueError(msg)
    for first, texts in chunk_texts(path, len(columns), part):
        with gc_paused():  # the rows hold no cycles: collecting while they pile up is wasted work
            batch = _stock_batch(first, texts, columns=columns, stores=stores, postgres=postgres, seal=seal)
        yield batch


def _stock_batch(
    first: int,
    texts: list[str],
    *,
    columns: tuple[str, ...],
    stores: dict[str, int],
    postgres: bool,
    seal: Sealer | None,
) -> Batch:
    """One chunk's good rows (lines ``first``, ``first + 1``, ...) and the errors of its other rows."""
    import numpy as np

    from simkeep.sims.columns import stock_columns

    n = len(texts)
    ok, values = stock_columns(texts, columns, stores)
    iccid, imsi, kind, location, _, label = values[:6]
    store_ids: list[int | None] = list(map(stores.get, values[4]))
    secrets = len(columns) > len(SIM_COLUMNS)
    with_opc = "opc" in columns
    algorithm = values[6] if secrets else [""] * n
    k = values[7] if secrets else [""] * n
    opc = values[8] if with_opc else [""] * n
    key_column = columns[7] if secrets else ""
    errors: list[RowError] = []
    count = n
    good = ok.copy()
    for i in np.flatnonzero(~ok).tolist():  # parsed and checked one by one: judged, or accepted as cleaned
        raw = one_record(texts[i], len(columns))
        if raw is None:  # a blank line
            count -= 1
            continue
        if isinstance(raw, str):
            errors.append(RowError(first + i, "row", raw))
            continue
        checked = _stock_row(raw, stores, key_column, with_opc=with_opc)
        if isinstance(checked, tuple) and any(value != value.strip() for value in raw):  # padding tolerated
            checked = _stock_row([value.strip() for value in raw], stores, key_column, with_opc=with_opc)
        if isinstance(checked, tuple):
            errors.append(RowError(first + i, *checked))
            continue
        good[i] = True
        iccid[i], imsi[i], kind[i], location[i], store_ids[i], label[i] = checked[:6]
        algorithm[i] = checked[6] or ""
        k[i], opc[i] = checked[7] or ("", "")
        opc[i] = opc[i] or ""
    positions = _admitted_sims(np.flatnonzero(good).tolist(), iccid, imsi, first, errors)
    errors.sort(key=lambda error: error.line)
    take: list[Sequence[Any]] = [iccid, imsi, kind, location, store_ids, label, algorithm]
    rows = [[column[p] for p in positions] for column in take]
    keyed = [p for p in positions if algorithm[p]] if secrets else []
    sealed: list[str | None] = [None] * n
    if keyed:
        sealing = [(iccid[p], k[p], opc[p] or None) for p in keyed]
        for p, value in zip(keyed, cast(Sealer, seal)(sealing), strict=True):
            sealed[p] = value
    rows.append([sealed[p] for p in positions])
    lines = array("i", [first + p for p in positions])
    return Batch(count, errors, lines, _stock_payload(rows, postgres=postgres))


def _admitted_sims(
    positions: list[int], iccid: list[str], imsi: list[str], first: int, errors: list[RowError]
) -> list[int]:
    """The good rows (by position) that no earlier row of the chunk shares an ICCID or IMSI with; an error
    for each of the others, naming the line that came first."""
    if len({iccid[p] for p in positions}) == len(positions) == len({imsi[p] for p in positions}):
        return positions
    seen_iccid: dict[str, int] = {}
    seen_imsi: dict[str, int] = {}
    admitted: list[int] = []
    for p in positions:
        line = first + p
        if iccid[p] in seen_iccid:
            errors.append(RowError(line, "iccid", f"the ICCID is also on line {seen_iccid[iccid[p]]}"))
        elif imsi[p] in seen_imsi:
            errors.append(RowError(line, "imsi", f"the IMSI is also on line {seen_imsi[imsi[p]]}"))
        else:
            seen_iccid[iccid[p]] = seen_imsi[imsi[p]] = line
            admitted.append(p)
    return admitted


def _stock_payload(rows: list[list[Any]], *, postgres: bool) -> Any:
    """A batch's good rows, given by column (iccid, imsi, kind, location, store id, batch label, algorithm
    or empty, sealed secrets or None), as COPY text (PostgreSQL, columns :data:`_SIM_COPY_COLUMNS`), or for
    SQLite as the staging table ``sk_import_stock`` in a database of its own (:func:`staged_database`)."""
    iccid, imsi, kind, location, store_id, label, algorithm, sealed = rows
    if postgres:
        if not iccid:
            return ""
        labels = "\x00".join(label)
        if "\\" in labels or "\t" in labels:
            label = list(map(copy_text, label))
        texts = [
            iccid, imsi, kind, location, [NULL if s is None else str(s) for s in store_id], label,
            [a or NULL for a in algorithm], [NULL if s is None else s for s in sealed],
        ]  # fmt: skip
        return "\n".join(map("\t".join, zip(*texts, strict=True))) + "\n"
    algorithms = [a or None for a in algorithm]
    stage = zip(iccid, imsi, kind, location, store_id, label, algorithms, sealed, strict=True)
    return staged_database((_SIM_STAGE_SQLITE, _SIM_LOAD_STAGE_SQLITE, stage))


def _stock_row(
    raw: list[str], stores: dict[str, int], key_column: str, *, with_opc: bool
) -> tuple[str, str] | list[Any]:
    """The values to insert for a row (secrets still unsealed, as ``(k, opc)``), or its first problem."""
    problem = _sim_problem(raw, stores)
    if problem is not None:
        return problem
    algorithm = auth = None
    if key_column:
        checked = _auth_of(raw, key_column, with_opc=with_opc)
        if checked is not None and not isinstance(checked, _Secrets):
            return checked
        if checked is not None:
            algorithm, auth = checked.algorithm, (checked.k, checked.opc)
    return [raw[0], raw[1], raw[2], raw[3], stores.get(raw[4]), raw[5], algorithm, auth]


def _sim_problem(  # noqa: PLR0911 - one early return per field, in the order the file has them
    row: list[str], stores: dict[str, int]
) -> tuple[str, str] | None:
    iccid, imsi, kind, location, store, label = row[:6]
    problem = fast_iccid_problem(iccid)
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


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_KEY_CHARS = 32
_ALGORITHM_RULE = "must be milenage, comp128v1, comp128v2 or comp128v3"


def _key_problem(value: str) -> str | None:
    """Why a key (K, Ki or OPc) is not 128 bits in hexadecimal; never quotes the value."""
    if len(value) != _KEY_CHARS:
        return f"must be 32 hexadecimal characters (128 bits), not {len(value)}"
    if not _HEX_DIGITS.issuperset(value):
        return "must be hexadecimal: only 0-9 and a-f"
    return None


class _Secrets(NamedTuple):
    """A row's checked secrets, keys in lower case."""

    algorithm: str
    k: str
    opc: str | None


def _auth_of(  # noqa: PLR0911 - one early return per rule
    row: list[str], key_column: str, *, with_opc: bool
) -> _Secrets | tuple[str, str] | None:
    """A row's secrets, None when it has none, or ``(field, reason)`` for the first rule they break."""
    algorithm, key = row[6].lower(), row[7]
    opc = row[8] if with_opc else ""
    if not algorithm:
        if key or opc:
            return "auth_algorithm", f"required with a key; {_ALGORITHM_RULE}"
        return None
    if algorithm not in AUTH_ALGORITHMS:
        return "auth_algorithm", _ALGORITHM_RULE
    milenage = algorithm == "milenage"
    if milenage and key_column == "ki":
        return "ki", "a Ki is a COMP128 key; a milenage SIM takes k and opc"
    if not key:
        return key_column, f"required for {algorithm}"
    problem = _key_problem(key)
    if problem:
        return key_column, problem
    if not milenage:
        if opc:
            return "opc", "only milenage takes an OPc; leave it empty for COMP128"
        return _Secrets(algorithm, key.lower(), None)
    if not opc:
        return "opc", "required for milenage" if with_opc else "required for milenage: add the opc column"
    problem = _key_problem(opc)
    if problem:
        return "opc", problem
    return _Secrets(algorithm, key.lower(), opc.lower())


#: SQLite: a batch's rows, staged by the reader (``k`` counts them from 1), and their insert.
_SIM_STAGE_SQLITE = (
    "CREATE TABLE sk_import_stock (k INTEGER PRIMARY KEY, iccid, imsi, kind, location, store_id, batch, "
    "auth_algorithm, auth_sealed)"
)
_SIM_LOAD_STAGE_SQLITE = (
    "INSERT INTO sk_import_stock (iccid, imsi, kind, location, store_id, batch, auth_algorithm, auth_sealed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SIM_INSERT_SQLITE = (
    "INSERT INTO sims (id, iccid, imsi, kind, status, location, store_id, batch, auth_algorithm, "
    "auth_sealed, created_at, updated_at) SELECT ? + k - 1, iccid, imsi, kind, 'in_stock', location, "
    "store_id, batch, auth_algorithm, auth_sealed, ?, ? FROM sk_import_stock"
)
_SIM_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS sk_import_stock (k integer, iccid text, imsi text, kind text, "
    "location text, store_id integer, batch text, auth_algorithm text, auth_sealed text) "
    "ON COMMIT DELETE ROWS"
)
_SIM_COPY_COLUMNS = (
    "iccid",
    "imsi",
    "kind",
    "location",
    "store_id",
    "batch",
    "auth_algorithm",
    "auth_sealed",
)
_SIM_NEXT_ID_PG = (
    "SELECT setval(pg_get_serial_sequence('sims', 'id'), GREATEST(nextval(pg_get_serial_sequence('sims', "
    "'id')), (SELECT COALESCE(max(id), 0) + 1 FROM sims)), false)"
)  # the first free id, which the next nextval (the id column's default) hands out
#: PostgreSQL: a SIM's status and times are the table's defaults (``in_stock``, the transaction's start;
#: migration 0023), which neither the COPY nor this insert names.
_SIM_INSERT_PG = (
    "INSERT INTO sims (id, iccid, imsi, kind, location, store_id, batch, auth_algorithm, auth_sealed) "
    "SELECT %s + k, iccid, imsi, kind, location, store_id, batch, auth_algorithm, auth_sealed "
    "FROM sk_import_stock"
)


class SimWriter:
    """Writes batches of SIM stock in one transaction each, classifying rows a unique key refuses."""

    def __init__(self, conn: Connection, *, stores: Sequence[int]) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.ledger = RunLedger()
        #: PostgreSQL: the stores the rows may name (checked by the reader). While every one of them exists,
        #: held so by a lock on ``stores``, a batch skips its rows' foreign key trigger (the replica role,
        #: where the connection may take it): a second of the server's time per million rows.
        self.stores = sorted(stores)
        self.replica = self.postgres and _may_skip_pg_checks(conn)

    def write(self, batch: Batch) -> tuple[int, int, list[RowError]]:
        """Insert one batch; return (imported, already present, errors)."""
        if not batch.lines:
            return 0, 0, []
        if not self.postgres:  # the staging table the reader built, in place of the batch before
            driver(self.conn).deserialize(batch.payload, name=SQLITE_STAGE_SCHEMA)
        write = self._write_pg if self.postgres else self._write_sqlite
        return write_batch(
            self.conn, lambda cur: write(cur, batch), save=self.ledger.mark, restore=self.ledger.rewind
        )

    def _write_sqlite(self, cur: Any, batch: Batch) -> tuple[int, int, list[RowError]]:
        """Insert the staged batch (attached by :meth:`write`); when a unique key refuses it, find the rows
        it refuses, as :meth:`_write_pg_staged` does, and insert the others (ids ``base + k - 1``)."""
        import sqlite3

        now = sqlite_now()
        base = sqlite_next_id(cur, "sims")
        cur.execute("SAVEPOINT sk_batch")
        try:
            cur.execute(_SIM_INSERT_SQLITE, (base, now, now))
            self.ledger.add(base, batch.lines)
            return len(batch.lines), 0, []
        except sqlite3.IntegrityError:
            cur.execute("ROLLBACK TO sk_batch")
        finally:
            cur.execute("RELEASE sk_batch")
        cur.execute(
            "SELECT st.k - 1, s.id, s.imsi = st.imsi FROM sk_import_stock AS st "
            "JOIN sims AS s ON s.iccid = st.iccid"
        )
        found_iccid = {k: (sid, bool(same)) for k, sid, same in cur.fetchall()}
        cur.execute(
            "SELECT st.k - 1, s.id FROM sk_import_stock AS st "
            "JOIN sims AS s ON s.imsi = st.imsi AND s.iccid <> st.iccid"
        )
        found_imsi = dict(cur.fetchall())
        drop, present, errors = self._classify(batch.lines, found_iccid, found_imsi)
        cur.execute(
            "DELETE FROM sk_import_stock WHERE k - 1 IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(drop)),),
        )
        cur.execute(_SIM_INSERT_SQLITE, (base, now, now))
        self.ledger.add(base, batch.lines, drop)
        return len(batch.lines) - len(drop), present, errors

    def _write_pg(self, cur: Any, batch: Batch) -> tuple[int, int, list[RowError]]:
        """COPY the batch straight into ``sims``; when a unique key refuses it, the staged way below.

        The ids come from the table's sequence, positioned on the first free id; with the table locked
        against other writers they are consecutive, which ``currval`` confirms before the ledger notes them.
        The status and the times are the table's defaults: sent as text, the two times alone cost the server
        a fifth of its time parsing them again for every row (migration 0023).
        """
        import psycopg

        n = len(batch.lines)
        cur.execute("SET LOCAL client_min_messages = warning")
        cur.execute("LOCK TABLE sims IN SHARE ROW EXCLUSIVE MODE")
        if self.replica and self._stores_held(cur):
            cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(_SIM_NEXT_ID_PG)
        base = int(cur.fetchone()[0])
        cur.execute("SAVEPOINT sk_batch")
        try:
            with cur.copy(f"COPY sims ({', '.join(_SIM_COPY_COLUMNS)}) FROM STDIN") as cp:
                cp.write(batch.payload)
            cur.execute("SELECT currval(pg_get_serial_sequence('sims', 'id'))")
            if int(cur.fetchone()[0]) == base + n - 1:
                self.ledger.add(base, batch.lines)
                return n, 0, []
            cur.execute("ROLLBACK TO SAVEPOINT sk_batch")  # pragma: no cover - someone took ids meanwhile
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT sk_batch")
        return self._write_pg_staged(cur, batch)

    def _stores_held(self, cur: Any) -> bool:
        """Whether every store the reader knew still exists, locked against changes until the batch ends."""
        cur.execute("LOCK TABLE stores IN SHARE MODE")
        cur.execute("SELECT count(*) FROM stores WHERE id = ANY(%s)", (self.stores,))
        return int(cur.fetchone()[0]) == len(self.stores)

    def _write_pg_staged(self, cur: Any, batch: Batch) -> tuple[int, int, list[RowError]]:
        """Stage the batch, find the rows a unique key refuses, and insert the others."""
        n = len(batch.lines)
        cur.execute(_SIM_STAGE)
        base = pg_reserve_ids(cur, "sims", n)
        with cur.copy(f"COPY sk_import_stock (k, {', '.join(_SIM_COPY_COLUMNS)}) FROM STDIN") as cp:
            cp.write("".join(f"{k}\t{row}\n" for k, row in enumerate(batch.payload.split("\n")[:-1])))
        self.ledger.add(base, batch.lines)
        cur.execute(
            "SELECT st.k, s.id, s.imsi = st.imsi FROM sk_import_stock st JOIN sims s ON s.iccid = st.iccid"
        )
        found_iccid = {k: (sid, same) for k, sid, same in cur.fetchall()}
        cur.execute(
            "SELECT st.k, s.id FROM sk_import_stock st "
            "JOIN sims s ON s.imsi = st.imsi AND s.iccid <> st.iccid"
        )
        found_imsi = dict(cur.fetchall())
        drop, present, errors = self._classify(batch.lines, found_iccid, found_imsi)
        cur.execute("DELETE FROM sk_import_stock WHERE k = ANY(%s)", (sorted(drop),))
        cur.execute(_SIM_INSERT_PG, (base,))
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
    settings: Settings,
    path: Path,
    *,
    actor: str = "cli",
    batch_rows: int = BATCH_ROWS,
    parallel: bool | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import SIM stock from ``path``; raises :class:`ImportFileUnreadable` before writing anything.

    Secrets in the file are sealed with the vault of ``settings`` before they leave the reader.
    """
    started = time.perf_counter()
    columns, total = check_headed_file(path, SIM_HEADERS, SIM_HEADER_RULE)
    seal = None
    if len(columns) > len(SIM_COLUMNS):
        from simkeep.identity.vault import get_vault

        seal = make_sealer(get_vault(settings))
    result = ImportResult(file=str(path))
    with engine.connect() as conn, sqlite_stage(conn):  # keys come in order: no need for bulk_connection
        stores = load_stores(conn)
        postgres = conn.dialect.name == "postgresql"
        writer = SimWriter(conn, stores=list(stores.values()))

        def read(part: Part) -> Iterator[Batch]:
            return check_sim_rows(path, part, stores=stores, postgres=postgres, columns=columns, seal=seal)

        batches = batches_of(
            read, total_lines=total, batch_rows=batch_rows, readers=readers_for(path, parallel)
        )
        load_batches(result, batches, writer, on_progress, total)
    result.seconds = time.perf_counter() - started
    record_run(engine, actor=actor, action="sims.imported", result=result)
    return result
