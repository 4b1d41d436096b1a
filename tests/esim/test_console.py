"""The console's order page shows an eSIM order's profile and the SM-DP+'s error, for staff to act on."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import SimKind, StaffRole
from simkeep.web.security import SESSION_COOKIE
from tests import factories
from tests.esim.conftest import Smdp, paid_esim_order, run_jobs
from tests.helpers import staff_headers


class TestConsoleOrderPage:
    """/console/counter/orders/{reference} for an eSIM order."""

    def test_error_is_shown_with_its_codes(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp
    ) -> None:
        """A profile the SM-DP+ refused shows its state, subject/reason, message and how to retry."""
        factories.sim(db, kind=SimKind.ESIM)  # not loaded at the SM-DP+: downloadOrder is refused
        order = paid_esim_order(db, settings, factories.holder(db, settings))
        run_jobs(db, settings)
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        token = staff_headers(client, clerk.username)["Authorization"].removeprefix("Bearer ")
        client.cookies.set(SESSION_COOKIE, token)
        r = client.get(f"/console/counter/orders/{order.reference}")
        assert r.status_code == 200, r.text
        assert 'data-state="error">出错<' in r.text
        assert "8.2.1 / 3.9: downloadOrder" in r.text
        assert f"simkeep esim retry {order.reference}" in r.text

    def test_released_profile_shows_no_secret(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp
    ) -> None:
        """A released profile is shown with its state and SM-DP+ address, never the matching id."""
        esim = factories.sim(db, kind=SimKind.ESIM)
        smdp.load(esim.iccid)
        order = paid_esim_order(db, settings, factories.holder(db, settings))
        run_jobs(db, settings)
        admin = factories.staff(db, StaffRole.ADMIN)
        token = staff_headers(client, admin.username)["Authorization"].removeprefix("Bearer ")
        client.cookies.set(SESSION_COOKIE, token)
        r = client.get(f"/console/counter/orders/{order.reference}")
        assert r.status_code == 200, r.text
        assert 'data-state="released">已发放激活码<' in r.text
        assert smdp.profile(esim.iccid)["matchingId"] not in r.text
