"""Fixtures of the fuzz tests: the app on the test's rolled-back session, a holder, staff and their tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.camara import clients
from simkeep.config import Settings
from simkeep.models import SimKind, StaffRole
from tests import factories
from tests.helpers import line_headers, staff_headers


@dataclass
class Target:
    """The app under test and who may call it."""

    app: FastAPI
    client: TestClient
    holder: factories.Holder
    holder_headers: dict[str, str]
    admin_headers: dict[str, str]
    camara_headers: dict[str, str]


@pytest.fixture
def target(db: Session, settings: Settings) -> Iterator[Target]:
    """The app sharing the test's session (each request commits into the test's transaction), with a holder
    signed in to a line, a signed-in admin, a relying party with every CAMARA scope, a store with a clerk
    and SIMs in stock."""
    from simkeep.app import create_app

    @contextmanager
    def scope() -> Iterator[Session]:
        db.commit()
        try:
            yield db
        finally:
            db.rollback()

    store = factories.store(db)
    factories.staff(db, StaffRole.CLERK, store_row=store)
    admin = factories.staff(db, StaffRole.ADMIN)
    for _ in range(2):
        factories.sim(db, store=store)
        factories.sim(db)
        factories.sim(db, kind=SimKind.ESIM)
    holder = factories.holder(db, settings)
    bank = clients.create_client(db, settings, name="Fuzz Bank", scopes=sorted(clients.KNOWN_SCOPES))
    # The CAMARA query writer flushes only at shutdown: no background thread shares the test's session.
    settings = settings.model_copy(
        update={"camara_client_cache_seconds": 0.0, "camara_query_flush_seconds": 3600.0}
    )
    app = create_app(settings, session_scope=scope)
    with TestClient(app) as client:
        yield Target(
            app=app,
            client=client,
            holder=holder,
            holder_headers=line_headers(client, holder.msisdn),
            admin_headers=staff_headers(client, admin.username),
            camara_headers=_camara_headers(client, bank.client.client_id, bank.secret),
        )


def _camara_headers(client: TestClient, client_id: str, secret: str) -> dict[str, str]:
    """A relying party's bearer token with every CAMARA scope, from the token endpoint."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    response = client.post("/oauth2/token", data=form)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
