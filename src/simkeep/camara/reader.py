"""The read path of the SIM Swap hot path: one indexed statement on connections of its own.

Each API worker keeps its own read connections, in autocommit mode: a check opens no transaction (on SQLite
no ``BEGIN IMMEDIATE`` write lock, which the rest of simkeep takes for every transaction, so the workers
read side by side), and each statement sees what was committed before it ran, so a SIM change is visible
to every worker the moment its activation commits. The statement is
:data:`simkeep.camara.repository.SWAP_FACTS`, compiled once; no ORM session is built per call.

- SQLite: one ``query_only`` connection per worker, used on the event loop itself. A point lookup on the
  unique index takes tens of microseconds, less than a hop to the thread pool and back.
- PostgreSQL: a small pool of psycopg async connections in autocommit mode, used on the event loop (no
  thread per check); a blocking path through an autocommit engine remains for callers off the loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from simkeep.camara.facts import FactsCache
from simkeep.camara.repository import SWAP_FACTS, SWAP_FACTS_MANY, SwapFacts
from simkeep.config import Settings
from simkeep.db.engine import normalise_url, read_only_sqlite_engine


class SwapReader:
    """Reads the SIM Swap facts of a number (PostgreSQL, or any database SQLAlchemy serves)."""

    #: Whether :meth:`swap_facts` may run on the event loop (cheap and never waiting on the network).
    inline = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def swap_facts(self, msisdn: str) -> SwapFacts | None:
        """(line status, activation time, last SIM change) of the line holding ``msisdn``, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(SWAP_FACTS, {"msisdn": msisdn}).first()
        if row is None:
            return None
        changed: datetime | None = row[2]
        return str(row[0]), row[1], changed

    async def aswap_facts(self, msisdn: str) -> SwapFacts | None:
        """:meth:`swap_facts` without blocking the event loop (in the thread pool here)."""
        return await run_in_threadpool(self.swap_facts, msisdn)

    def close(self) -> None:
        """Close the reader's connections."""
        self.engine.dispose()

    async def aclose(self) -> None:
        """Close the reader's connections (from the event loop)."""
        self.close()


class PostgresSwapReader(SwapReader):
    """PostgreSQL: the reads of the event loop go through psycopg's async connections (autocommit), held in a
    small pool of this worker's own, so a check needs no thread (dozens of threads waiting on the database
    would fight the event loop for the GIL). Lookups are batched: the numbers asked for while a statement is
    on its way are looked up together by the next one (``msisdn = ANY(...)`` on the unique index), so under
    load one round trip answers many checks and a single check still costs one. :meth:`swap_facts`
    (blocking, through the engine) remains for callers off the loop."""

    def __init__(self, engine: Engine, *, size: int) -> None:
        super().__init__(engine)
        self.sql = str(SWAP_FACTS_MANY.compile(dialect=engine.dialect))  # psycopg's %(msisdns)s placeholder
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._opened = 0
        self._running = 0
        self._pending: dict[str, list[asyncio.Future[SwapFacts | None]]] = {}
        self._scheduled = False
        #: Statements run and numbers they answered (the batching at work; read by tests and benchmarks).
        self.statements = 0
        self.looked_up = 0

    async def aswap_facts(self, msisdn: str) -> SwapFacts | None:
        """(line status, activation time, last SIM change) of the line holding ``msisdn``, or None."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SwapFacts | None] = loop.create_future()
        self._pending.setdefault(msisdn, []).append(future)
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # A batch leaves at the end of this turn of the loop (collecting the checks that reach this point in
        # the same turn), when a connection is free; otherwise the batch that finishes next sends it.
        if self._pending and not self._scheduled and self._running < self._size:
            self._scheduled = True
            loop.call_soon(self._start_batch, loop)

    def _start_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, {}
        if batch:
            self._running += 1
            loop.create_task(self._run_batch(batch, loop))

    async def _run_batch(
        self, batch: dict[str, list[asyncio.Future[SwapFacts | None]]], loop: asyncio.AbstractEventLoop
    ) -> None:
        try:
            try:
                rows = await self._fetch(list(batch))
            except BaseException as exc:  # every waiting check fails with the database's error
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                return
            self.statements += 1
            self.looked_up += len(batch)
            for msisdn, futures in batch.items():
                facts = rows.get(msisdn)
                for future in futures:
                    if not future.done():  # a check whose client went away is cancelled
                        future.set_result(facts)
        finally:
            self._running -= 1
            self._schedule(loop)

    async def _fetch(self, msisdns: list[str]) -> dict[str, SwapFacts]:
        if self._idle:
            conn = self._idle.pop()
        else:
            self._opened += 1
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            except BaseException:
                self._opened -= 1
                raise
        try:
            cursor = await conn.execute(self.sql, {"msisdns": msisdns})
            found = await cursor.fetchall()
        except BaseException:
            self._opened -= 1  # a broken connection is dropped; the next batch opens a new one
            await conn.close()
            raise
        self._idle.append(conn)
        return {row[0]: (str(row[1]), row[2], row[3]) for row in found}

    async def aclose(self) -> None:
        """Close the pooled connections and the engine."""
        while self._idle:
            await self._idle.pop().close()
        self.close()


def _utc(value: str | None) -> datetime | None:
    """A timestamp as simkeep stores it in SQLite (UTC, no zone), aware."""
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


#: How much of the SQLite file the reader maps into memory (address space, not memory used).
MMAP_BYTES = 1 << 30


class SqliteSwapReader(SwapReader):
    """One read-only autocommit SQLite connection, used on the event loop."""

    inline = True
    SQL = str(SWAP_FACTS.compile(dialect=sqlite.dialect()))

    def __init__(self, path: str, *, busy_timeout_ms: int) -> None:
        self.connection = sqlite3.connect(
            path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        self.connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        self.connection.execute("PRAGMA query_only=ON")
        # Pages read through a memory map instead of a read() call each: a quarter off a check's lookup.
        self.connection.execute(f"PRAGMA mmap_size={MMAP_BYTES}")

    def swap_facts(self, msisdn: str) -> SwapFacts | None:
        """(line status, activation time, last SIM change) of the line holding ``msisdn``, or None."""
        row: Any = self.connection.execute(self.SQL, (msisdn,)).fetchone()
        if row is None:
            return None
        activated = _utc(row[1])
        assert activated is not None
        return str(row[0]), activated, _utc(row[2])

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def reader_for(settings: Settings) -> SwapReader:
    """The reader of one API worker for the configured database."""
    url = make_url(normalise_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # Readers of a WAL database do not wait on writers; the bound only matters in rare cases (a database
        # being recovered), where the event loop must not stall for the writers' long timeout.
        return SqliteSwapReader(url.database, busy_timeout_ms=min(settings.sqlite_busy_timeout_ms, 2000))
    engine = create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size * 2,
        pool_recycle=300,
    )
    if url.get_backend_name() == "postgresql" and url.get_driver_name() == "psycopg":
        return PostgresSwapReader(engine, size=settings.db_pool_size)
    return SwapReader(engine)


def facts_cache_for(settings: Settings) -> FactsCache:
    """The worker's copy of the SIM Swap facts (:mod:`simkeep.camara.facts`), on an autocommit engine of its
    own (its reads take no write lock on SQLite; a poll sees what committed before it)."""
    url = make_url(normalise_url(settings.database_url))
    # SQLite: the polls read on the event loop, which must not stall for the writers' long busy timeout
    # (a WAL reader waits only in rare cases, such as a database being recovered).
    sqlite_bound = {"timeout": min(settings.sqlite_busy_timeout_ms, 2000) / 1000}
    connect_args = sqlite_bound if url.get_backend_name() == "sqlite" else {}
    engine = create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_size=1,
        max_overflow=1,
        pool_recycle=300,
        connect_args=connect_args,
    )
    return FactsCache(
        engine,
        poll_seconds=settings.camara_facts_poll_seconds,
        max_lines=settings.camara_facts_cache_max_lines,
    )


def client_read_scope(
    settings: Settings,
) -> tuple[Callable[[], AbstractContextManager[Session]], Engine] | None:
    """SQLite: sessions for a worker's reads of its clients (the client row and its day's count) on
    read-only connections that open no transaction (:func:`~simkeep.db.engine.read_only_sqlite_engine`),
    and the engine to dispose of at the end: through simkeep's sessions, which take the write lock, such a
    read queued behind the writers for seconds under load. None elsewhere (PostgreSQL readers never wait
    for writers)."""
    url = make_url(normalise_url(settings.database_url))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    engine = read_only_sqlite_engine(
        settings.database_url,
        timeout_seconds=min(settings.sqlite_busy_timeout_ms, 2000) / 1000,
        pool_size=2,
        max_overflow=4,
    )

    @contextmanager
    def scope() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    return scope, engine
