"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

SQLite is set up as Prefect does: WAL journal, foreign keys on, a busy timeout, and ``BEGIN IMMEDIATE`` for
every transaction, so that concurrent writers queue instead of failing half-way with ``database is locked``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 10, **kwargs: Any) -> Engine:
    """An engine for ``url`` with simkeep's connection settings applied."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={
                "check_same_thread": False,
                "isolation_level": None,
                "timeout": busy_timeout_ms / 1000,
            },
            pool_size=pool_size,
            max_overflow=pool_size * 2,
            **kwargs,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True, **kwargs)


def read_only_sqlite_engine(url: str, *, timeout_seconds: float, **kwargs: Any) -> Engine:
    """An engine on an SQLite file for reads that write nothing: ``query_only`` connections with pysqlite's
    own transaction handling, where a SELECT opens no transaction. simkeep's engine takes the write lock
    (``BEGIN IMMEDIATE``) for every transaction; in WAL mode these reads run beside the writers instead."""
    engine = create_engine(normalise_url(url), connect_args={"timeout": timeout_seconds}, **kwargs)

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only=ON")

    return engine


#: SQLite's own wait for a lock, per try, once a connection is set up (milliseconds). Its busy handler
#: sleeps the longer the longer a waiter has waited (up to 100 ms between tries) while a newcomer tries
#: again after 1 ms, so under a steady stream of writers an early waiter could lose every hand-over for
#: seconds (a replacement's request 10 s and more at p99 under load, while the median took one). simkeep lets
#: SQLite wait a few milliseconds only and does the waiting for the write lock itself
#: (:func:`_begin_immediate`), up to the configured busy timeout.
SQLITE_LOCK_TRY_MS = 5

#: The longest sleep between two tries of ``BEGIN IMMEDIATE`` (seconds).
_BEGIN_RETRY_MAX_SLEEP = 0.002

_GATED = "simkeep.sqlite_gate"


class _WriteGate:
    """One engine's turn at SQLite's write lock within a process: a single thread waits at the file, the
    others queue here and are let through in turn. Shared by no two processes (a forked child starts with
    it open; :func:`_reopen_gates`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def enter(self, info: dict[str, Any], timeout: float) -> bool:
        if not self.lock.acquire(timeout=timeout):
            return False
        info[_GATED] = True
        return True

    def leave(self, info: dict[str, Any]) -> None:
        if info.pop(_GATED, False):
            self.lock.release()


_GATES: weakref.WeakSet[_WriteGate] = weakref.WeakSet()


def set_wal(cursor: Any, timeout: float) -> None:
    """``PRAGMA main.journal_mode = WAL``, tried again for up to ``timeout`` seconds while the database is
    locked.

    Leaving a rollback journal for WAL takes the database for a moment (a first lines load switches it to a
    rollback journal while it has it alone, and back after). Two connections doing so at once each hold a
    shared lock and want the other's gone: SQLite then fails one at once with "database is locked" rather
    than call its busy handler (waiting would be a deadlock), so the wait is done here, each failed try
    having let its lock go. Past the timeout the last try's error is raised.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA main.journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, _SET_WAL_MAX_SLEEP)


#: The longest sleep between two tries of :func:`set_wal` (seconds).
_SET_WAL_MAX_SLEEP = 0.05


def _reopen_gates() -> None:
    for gate in list(_GATES):
        gate.lock = threading.Lock()


os.register_at_fork(after_in_child=_reopen_gates)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    gate = _WriteGate()
    _GATES.add(gate)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")  # the set-up may wait for a lock
        set_wal(cursor, busy_timeout_ms / 1000)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={min(SQLITE_LOCK_TRY_MS, int(busy_timeout_ms))}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        _begin_immediate(connection, gate, busy_timeout_ms / 1000)

    # The gate opens as the transaction ends (the commit's own write is SQLite's to order), or when the
    # connection goes back to the pool, or is thrown away, without either.
    @event.listens_for(engine, "commit")
    def _on_commit(connection: Any) -> None:
        gate.leave(connection.info)

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection: Any) -> None:
        gate.leave(connection.info)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        gate.leave(record.info)

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(_dbapi_connection: Any, record: Any, _exc: Any) -> None:
        gate.leave(record.info)


def _begin_immediate(connection: Any, gate: _WriteGate, timeout: float) -> None:
    """``BEGIN IMMEDIATE``, waiting for the write lock up to ``timeout`` seconds: first for this process's
    turn at the gate, then trying the file every millisecond or two. Past the timeout the last try raises
    SQLite's own ``database is locked``, as SQLite's busy handler would have."""
    deadline = time.monotonic() + timeout
    if not gate.enter(connection.info, timeout):
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the process's holder still has it: locked
        return
    raw = connection.connection.driver_connection
    pause = 0.0005
    while time.monotonic() < deadline:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                break  # not a wait: the statement below raises it as SQLAlchemy's error
        time.sleep(pause)
        pause = min(pause * 2, _BEGIN_RETRY_MAX_SLEEP)
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        gate.leave(connection.info)
        raise


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (the request commits once, then serialises)."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
