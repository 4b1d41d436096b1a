"""On SQLite a request's token is looked up on a read-only connection, outside the write lock.

The API's own app (``simkeep serve``) owns its database here, as in production: the tests' shared session is
not handed in, so the lookup goes through ``app.state.read_scope``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.app import create_app
from simkeep.config import Settings
from simkeep.db import migrate
from simkeep.db.engine import make_engine
from simkeep.models import StaffRole
from tests import factories
from tests.conftest import TEST_SECRET
from tests.helpers import staff_headers


@pytest.fixture
def owned(tmp_path: Path) -> Iterator[tuple[TestClient, str, Path]]:
    """An app owning an SQLite file (busy timeout 300 ms), its client, a clerk's name and the file."""
    path = tmp_path / "owned.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with Session(engine) as session:
        clerk = factories.staff(session, StaffRole.CLERK, store_row=factories.store(session)).username
        session.commit()
    engine.dispose()
    url = f"sqlite:///{path}"
    settings = Settings(
        environment="test", secret_key=TEST_SECRET, database_url=url, sqlite_busy_timeout_ms=300
    )
    with TestClient(create_app(settings)) as client:
        assert client.app.state.read_scope is not None  # type: ignore[attr-defined]
        yield client, clerk, path


def test_a_token_signed_in_and_out_is_seen_at_once(owned: tuple[TestClient, str, Path]) -> None:
    client, clerk, _ = owned
    headers = staff_headers(client, clerk)
    assert client.get("/api/v1/stock", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/sign-out", headers=headers).status_code == 204
    r = client.get("/api/v1/stock", headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_TOKEN")


def test_tokens_are_checked_while_another_writer_holds_the_lock(owned: tuple[TestClient, str, Path]) -> None:
    """A refused token is refused at once, not after the busy timeout: its lookup took no lock. A good
    token's request still waits for the lock for its own work, and fails cleanly when it cannot get it."""
    client, clerk, path = owned
    headers = staff_headers(client, clerk)
    client.post("/api/v1/auth/sign-out", headers=staff_headers(client, clerk))  # a revoked token exists too
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        for bad in ("not-a-token", "x" * 40):
            r = client.get("/api/v1/stock", headers={"Authorization": f"Bearer {bad}"})
            assert (r.status_code, r.json()["code"]) == (401, "INVALID_TOKEN")
        r = client.get("/api/v1/stock", headers=headers)  # valid: its endpoint's transaction waits
        assert (r.status_code, r.json()["code"], r.headers["retry-after"]) == (503, "DATABASE_BUSY", "1")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert client.get("/api/v1/stock", headers=headers).status_code == 200
