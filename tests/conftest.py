"""Test fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

The schema is built by running the migrations. Ordinary tests run inside one transaction that is rolled
back at the end (the code under test commits to a savepoint). Tests marked ``concurrent`` get a private,
freshly migrated database (a new SQLite file, or a new PostgreSQL schema) with real commits, because
several connections must see each other's work.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db import migrate
from simkeep.db.engine import make_engine, make_session_factory

POSTGRES_URL = os.environ.get("SIMKEEP_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", "postgres"] if POSTGRES_URL else ["sqlite"]
TEST_SECRET = "test-secret-key-0123456789abcdef0123456789"


def _new_database(backend: str, tmp_dir: Path) -> tuple[str, Engine, Callable[[], None]]:
    """A freshly migrated database; returns its URL, an engine and a function that removes it."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_dir / f'simkeep-{uuid.uuid4().hex[:8]}.db'}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        return url, engine, engine.dispose
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL, pool_size=1)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    migrate.upgrade(engine)

    def drop() -> None:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url, engine, drop


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend this test runs on."""
    return str(request.param)


@pytest.fixture(scope="session")
def migrated(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    """One migrated database per backend for the whole run."""
    url, engine, drop = _new_database(backend, tmp_path_factory.mktemp(backend))
    yield url, engine
    drop()


@pytest.fixture
def engine(migrated: tuple[str, Engine]) -> Engine:
    """The shared, migrated engine."""
    return migrated[1]


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    """Where the file transport writes the messages of this test (one-time codes included)."""
    return tmp_path / "outbox"


@pytest.fixture
def settings(migrated: tuple[str, Engine], outbox: Path) -> Settings:
    """Settings for tests, pointing at the test database, with messages written to ``outbox``."""
    return Settings(
        environment="test",
        secret_key=TEST_SECRET,
        database_url=migrated[0],
        otp_transport="file",
        otp_outbox_dir=str(outbox),
    )


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def fresh(backend: str, tmp_path: Path) -> Iterator[tuple[Engine, Settings]]:
    """A private database with real commits, for tests where several connections work at once."""
    url, engine, drop = _new_database(backend, tmp_path)
    settings = Settings(
        environment="test",
        secret_key=TEST_SECRET,
        database_url=url,
        otp_transport="file",
        otp_outbox_dir=str(tmp_path / "outbox"),
    )
    try:
        yield engine, settings
    finally:
        drop()


@pytest.fixture
def client(db: Session, settings: Settings) -> Iterator[TestClient]:
    """The ASGI app over HTTP, sharing the test's rolled-back session."""
    from simkeep.app import create_app

    @contextmanager
    def scope() -> Iterator[Session]:
        db.commit()  # keep the test's own set-up (into the outer transaction) whatever the request does
        try:
            yield db
        finally:
            db.rollback()

    app = create_app(settings, session_scope=scope)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def fresh_session_factory(fresh: tuple[Engine, Settings]) -> Callable[[], Session]:
    """Sessions on the private database of :func:`fresh`."""
    return make_session_factory(fresh[0])
