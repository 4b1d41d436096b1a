"""What every CLI command shares: settings, an engine, output as text or JSON.

Settings, SQLAlchemy and logging are imported by the functions that need them, not by this module: every
command module imports it, and ``simkeep --help`` (or a mistyped command) should not pay for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from simkeep.config import Settings

JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON.")


def load_settings() -> Settings:
    """Settings for a command, with logging configured."""
    from simkeep.config import get_settings
    from simkeep.logging import configure_logging

    settings = get_settings()
    configure_logging(settings)
    return settings


@contextmanager
def open_engine(settings: Settings) -> Iterator[Engine]:
    """An engine for the configured database, disposed afterwards."""
    from simkeep.db.engine import make_engine

    engine = make_engine(
        settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        pool_size=settings.db_pool_size,
    )
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def open_session(settings: Settings) -> Iterator[Session]:
    """A session on the configured database; the command commits."""
    from simkeep.db.engine import make_session_factory

    with open_engine(settings) as engine:
        session = make_session_factory(engine)()
        try:
            yield session
        finally:
            session.close()


def emit(result: Any, *, as_json: bool, text: str) -> None:
    """Print ``result`` as JSON, or ``text`` for a person."""
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str, indent=2))
    else:
        print(text)


def fail(message: str, *, as_json: bool, code: str, exit_code: int = 1, **extra: Any) -> typer.Exit:
    """Print an error (as JSON when asked) and return the Exit to raise."""
    if as_json:
        print(json.dumps({"error": code, "message": message, **extra}, ensure_ascii=False, default=str))
    else:
        typer.echo(f"error [{code}]: {message}", err=True)
    return typer.Exit(exit_code)


@contextmanager
def reading_session(settings: Settings) -> Iterator[Session]:
    """A session for a long read that writes nothing.

    On SQLite a connection of its own, read-only (``query_only``) and without a transaction: simkeep's
    engine takes the write lock (``BEGIN IMMEDIATE``) for every transaction, and held for the length of a
    read of the query log it would stop the CAMARA query writer, and every other writer, until the read
    ends (or their busy timeout). In WAL mode the read runs beside them. Elsewhere :func:`open_session`.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    from simkeep.db.engine import normalise_url, read_only_sqlite_engine

    url = normalise_url(settings.database_url)
    if make_url(url).get_backend_name() != "sqlite":
        with open_session(settings) as session:
            yield session
        return
    engine = read_only_sqlite_engine(
        url, timeout_seconds=settings.sqlite_busy_timeout_ms / 1000, poolclass=NullPool
    )
    session = Session(engine)
    try:
        yield session
    finally:
        session.close()
        engine.dispose()
