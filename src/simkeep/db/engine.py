"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

SQLite is set up as Prefect does: WAL journal, foreign keys on, a busy timeout, and ``BEGIN IMMEDIATE`` for
every transaction, so that concurrent writers queue instead of failing half-way with ``database is locked``.
"""

from __future__ import annotations

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


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (the request commits once, then serialises)."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
