"""How simkeep's SQLite engine waits for the write lock (simkeep.db.engine).

Each transaction starts with ``BEGIN IMMEDIATE``. SQLite's own busy handler is left a few milliseconds per
try; the engine waits for the lock itself up to the configured busy timeout, one thread per engine at a time
at the file (the others queue on the engine's gate), and past the timeout raises SQLite's own ``database is
locked``, which the API answers as ``503 DATABASE_BUSY``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from simkeep.db.engine import SQLITE_LOCK_TRY_MS, make_engine, set_wal


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """An SQLite file with one table."""
    file = tmp_path / "lock.db"
    engine = make_engine(f"sqlite:///{file}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    engine.dispose()
    return file


def _engine(path: Path, busy_timeout_ms: int = 30_000) -> Engine:
    return make_engine(f"sqlite:///{path}", busy_timeout_ms=busy_timeout_ms)


def _rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [n for (n,) in conn.execute("SELECT n FROM t ORDER BY rowid")]


def _hold(path: Path, seconds: float) -> threading.Thread:
    """Another process's writer (its own connection) holding the write lock for ``seconds``."""
    held = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert held.wait(5)
    return thread


def test_sqlite_itself_waits_only_a_few_milliseconds(path: Path) -> None:
    engine = _engine(path)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_LOCK_TRY_MS
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_a_writer_waits_for_a_lock_held_longer_than_sqlites_own_wait(path: Path) -> None:
    """The lock is held 0.3 s, sixty times SQLite's own wait: the transaction waits and then writes."""
    engine = _engine(path)
    holder = _hold(path, 0.3)
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    waited = time.monotonic() - started
    holder.join()
    assert waited >= 0.25
    assert _rows(path) == [1]
    engine.dispose()


def test_past_the_busy_timeout_the_error_is_sqlites_and_the_engine_recovers(path: Path) -> None:
    engine = _engine(path, busy_timeout_ms=200)
    holder = _hold(path, 0.6)
    with pytest.raises(OperationalError, match="database is locked"), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
    holder.join()
    assert _rows(path) == []
    # The gate was given back: the next transaction of the same engine, from another thread, goes at once.
    done: list[int] = []

    def write() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        done.append(2)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(5)
    assert done == [2]
    assert _rows(path) == [2]
    engine.dispose()


def test_threads_of_one_engine_take_turns(path: Path) -> None:
    """Twenty threads, each writing five rows in one transaction: every transaction whole and in one
    piece, none lost, none refused (the gate queues them; nobody waits out a timeout)."""
    engine = _engine(path, busy_timeout_ms=10_000)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            with Session(engine) as session:
                for i in range(5):
                    session.execute(text("INSERT INTO t VALUES (:n)"), {"n": k * 10 + i})
                session.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    rows = _rows(path)
    assert sorted(rows) == sorted(k * 10 + i for k in range(20) for i in range(5))
    # Each transaction's five rows are together: no two transactions interleaved.
    assert all(rows[j] // 10 == rows[j - j % 5] // 10 for j in range(len(rows)))
    engine.dispose()


def test_a_rolled_back_or_failed_transaction_gives_the_turn_back(path: Path) -> None:
    engine = _engine(path, busy_timeout_ms=2_000)
    with Session(engine) as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        session.rollback()
    with pytest.raises(OperationalError), Session(engine) as session:
        session.execute(text("INSERT INTO nowhere VALUES (1)"))
    with Session(engine) as session:  # a session closed with its transaction open
        session.execute(text("INSERT INTO t VALUES (3)"))
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (4)"))
    assert time.monotonic() - started < 1.5  # not the 2 s of a turn never given back
    assert _rows(path) == [4]
    engine.dispose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_inherit_a_taken_turn(path: Path) -> None:
    engine = _engine(path, busy_timeout_ms=2_000)
    session = Session(engine)
    session.execute(text("SELECT 1"))  # this process's turn is taken (and the write lock)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own engine use must not wait for the parent's turn
        os.close(read)
        try:
            gate_free = False
            from simkeep.db import engine as engine_module

            gate_free = all(g.lock.acquire(blocking=False) for g in list(engine_module._GATES))
        finally:
            os.write(write, b"1" if gate_free else b"0")
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    session.close()
    engine.dispose()
    assert answer == b"1"


class TestSetWal:
    """A connection puts the database in WAL mode as it opens, waiting while another holds it in a rollback
    journal's lock (a first lines load switches to one while it has the database alone, and back after)."""

    @pytest.fixture
    def rollback(self, path: Path) -> Path:
        """The database in rollback-journal mode."""
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
        finally:
            conn.close()
        return path

    def test_waits_for_a_read_to_end(self, rollback: Path) -> None:
        """Another connection's read keeps the switch waiting (SQLite's own handler gets no time at all
        here, as in the deadlock where it fails at once); once the read ends, the database is in WAL mode."""
        reader = sqlite3.connect(rollback, isolation_level=None, check_same_thread=False)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 0
        threading.Timer(0.2, reader.close).start()
        switcher = sqlite3.connect(rollback, isolation_level=None)
        try:
            switcher.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                switcher.execute("PRAGMA journal_mode = WAL")  # what SQLite alone does
            set_wal(switcher, 30)
            assert switcher.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            switcher.close()
        engine = _engine(rollback)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        engine.dispose()

    def test_gives_up_after_its_timeout(self, rollback: Path) -> None:
        """A read longer than the timeout: the switch fails with SQLite's "database is locked", and the
        database stays as it was; so does opening an engine's connection past its busy timeout."""
        reader = sqlite3.connect(rollback, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()
        switcher = sqlite3.connect(rollback, isolation_level=None)
        try:
            switcher.execute("PRAGMA busy_timeout = 0")
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                set_wal(switcher, 0.1)
            engine = _engine(rollback, busy_timeout_ms=100)
            with pytest.raises(OperationalError, match="database is locked"), engine.connect():
                pass
            engine.dispose()
        finally:
            switcher.close()
            reader.close()
        check = sqlite3.connect(rollback)
        try:
            assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 0
        finally:
            check.close()
