"""Fixtures for replacement tests: a store with a clerk, a reviewer, an admin, and stock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import Sim, SimKind, StaffRole, Store
from tests import factories
from tests.helpers import line_headers, staff_headers
from tests.online import online_application


@dataclass
class World:
    """A store with stock and staff, a warehouse with stock, and one holder."""

    store: Store
    store_sims: list[Sim]
    warehouse_sims: list[Sim]
    esims: list[Sim]
    holder: factories.Holder
    clerk: dict[str, str]
    reviewer: dict[str, str]
    admin: dict[str, str]
    client: TestClient
    outbox: Path

    def holder_headers(self) -> dict[str, str]:
        """The holder, signed in with the service password."""
        return line_headers(self.client, self.holder.msisdn)

    def application(
        self,
        headers: dict[str, str],
        *,
        portrait: str = "obama2.jpg",
        selfie: str = "obama3.jpg",
        document_number: str = factories.DOCUMENT,
    ) -> dict[str, str]:
        """Uploads and a one-time code for an online application (by default one in the face review band)."""
        return online_application(
            self.client,
            headers,
            self.outbox,
            document_number=document_number,
            portrait=portrait,
            selfie=selfie,
        )

    def submit_online(
        self,
        headers: dict[str, str] | None = None,
        *,
        channel: str = "online_mail",
        portrait: str = "obama2.jpg",
        selfie: str = "obama3.jpg",
        status: int = 201,
    ) -> dict[str, object]:
        """Apply online through the API and return the response body."""
        headers = headers or self.holder_headers()
        body = {
            "msisdn": self.holder.msisdn,
            "channel": channel,
            **self.application(headers, portrait=portrait, selfie=selfie),
        }
        r = self.client.post("/api/v1/replacements", json=body, headers=headers)
        assert r.status_code == status, r.text
        data: dict[str, object] = r.json()
        return data


@pytest.fixture
def world(client: TestClient, db: Session, settings: Settings, outbox: Path) -> World:
    """Everything a replacement needs."""
    store = factories.store(db)
    clerk = factories.staff(db, StaffRole.CLERK, store_row=store)
    reviewer = factories.staff(db, StaffRole.REVIEWER)
    admin = factories.staff(db, StaffRole.ADMIN)
    store_sims = [factories.sim(db, store=store) for _ in range(3)]
    warehouse = [factories.sim(db) for _ in range(3)]
    esims = [factories.sim(db, kind=SimKind.ESIM) for _ in range(2)]
    h = factories.holder(db, settings)
    return World(
        store=store,
        store_sims=store_sims,
        warehouse_sims=warehouse,
        esims=esims,
        holder=h,
        clerk=staff_headers(client, clerk.username),
        reviewer=staff_headers(client, reviewer.username),
        admin=staff_headers(client, admin.username),
        outbox=outbox,
        client=client,
    )
