"""Helpers for API tests: signing in and counting rows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simkeep.audit.service import link_pending
from simkeep.db.base import Base
from tests.factories import PASSWORD, STAFF_PASSWORD


def line_headers(client: TestClient, msisdn: str, password: str = PASSWORD) -> dict[str, str]:
    """Authorization headers of a holder signed in to ``msisdn``."""
    r = client.post("/api/v1/auth/line/token", json={"msisdn": msisdn, "service_password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def staff_headers(client: TestClient, username: str) -> dict[str, str]:
    """Authorization headers of a signed-in staff user."""
    r = client.post("/api/v1/auth/staff/token", json={"username": username, "password": STAFF_PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def snapshot(
    db: Session, *, exclude: tuple[str, ...] = ("auth_tokens", "proof_attempts", "audit_log")
) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in key order (minus tables a refused request may legitimately add to).

    Comparing two snapshots shows that a refused request changed no data at all. Excluding
    ``notifications`` (an alert about the refusal) excludes their delivery jobs too.
    """
    if "notifications" in exclude:
        exclude = (*exclude, "jobs")
    link_pending(db)  # the audit entries the transaction has recorded are among its rows
    db.expire_all()
    out: dict[str, list[tuple[object, ...]]] = {}
    for name, table in Base.metadata.tables.items():
        if name in exclude:
            continue
        order = list(table.primary_key.columns)
        out[name] = [tuple(row) for row in db.execute(select(table).order_by(*order))]
    return out


def count(db: Session, table: str) -> int:
    """Rows in ``table``."""
    return int(db.scalar(select(func.count()).select_from(Base.metadata.tables[table])) or 0)


T = TypeVar("T")


def side_by_side(*calls: Callable[[], T]) -> list[T]:
    """Run each call on a thread of its own, all released together; their results in the calls' order
    (a call's exception is raised here)."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        start.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))
