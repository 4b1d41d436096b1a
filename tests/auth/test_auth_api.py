"""Signing in and out, and what tokens admit."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.models import AuthToken, StaffRole
from tests import factories
from tests.helpers import line_headers, snapshot, staff_headers


class TestLineSignIn:
    """Holders sign in with the number and the service password."""

    def test_right_password_gives_a_token_for_own_line(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """The token shows the holder's own line."""
        h = factories.holder(db, settings)
        r = client.get(f"/api/v1/lines/{h.msisdn}", headers=line_headers(client, h.msisdn))
        assert r.status_code == 200
        body = r.json()
        assert (body["status"], body["sim"]["iccid"][-4:]) == ("active", h.sim.iccid[-4:])
        assert h.sim.iccid not in r.text

    def test_wrong_password_and_unknown_number_look_alike(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A wrong password and an unknown number give the same answer; no token is made."""
        h = factories.holder(db, settings)
        before = snapshot(db)
        wrong = client.post("/api/v1/auth/line/token", json={"msisdn": h.msisdn, "service_password": "nope"})
        unknown = client.post(
            "/api/v1/auth/line/token", json={"msisdn": "+8613912345678", "service_password": "nope"}
        )
        assert wrong.status_code == unknown.status_code == 403
        assert wrong.json()["detail"] == unknown.json()["detail"]
        assert db.query(AuthToken).count() == 0
        assert snapshot(db) == before

    def test_repeated_failures_lock_password_use(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """After five failed passwords even the right one is refused for a while, answered like a wrong one
        (so the lock does not tell a live number from an unknown one)."""
        h = factories.holder(db, settings)
        for _ in range(5):
            client.post("/api/v1/auth/line/token", json={"msisdn": h.msisdn, "service_password": "guess"})
        r = client.post(
            "/api/v1/auth/line/token", json={"msisdn": h.msisdn, "service_password": factories.PASSWORD}
        )
        assert r.status_code == 403
        assert r.json()["code"] == "PROOF_FAILED"
        assert "access_token" not in r.json()

    def test_locked_line_can_still_report_loss(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """The lock never stands in the way of suspending a lost SIM."""
        h = factories.holder(db, settings)
        for _ in range(5):
            client.post("/api/v1/auth/line/token", json={"msisdn": h.msisdn, "service_password": "guess"})
        r = client.post(
            "/api/v1/loss-reports", json={"msisdn": h.msisdn, "real_name": h.subscriber.real_name}
        )
        assert r.status_code == 201


class TestTokens:
    """Token lifetime and revocation."""

    def test_signed_out_token_is_refused(self, client: TestClient, db: Session, settings: Settings) -> None:
        """After sign-out the token no longer works."""
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        headers = staff_headers(client, clerk.username)
        assert client.get("/api/v1/stock", headers=headers).status_code == 200
        assert client.post("/api/v1/auth/sign-out", headers=headers).status_code == 204
        r = client.get("/api/v1/stock", headers=headers)
        assert r.status_code == 401
        assert r.json()["code"] == "INVALID_TOKEN"

    def test_expired_token_is_refused(self, client: TestClient, db: Session, settings: Settings) -> None:
        """An expired token is refused."""
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        headers = staff_headers(client, clerk.username)
        for token in db.query(AuthToken).all():
            token.expires_at = utcnow() - timedelta(seconds=1)
        db.flush()
        assert client.get("/api/v1/stock", headers=headers).status_code == 401

    def test_garbage_token_is_refused(self, client: TestClient) -> None:
        """An unknown token is 401 with a WWW-Authenticate header."""
        r = client.get("/api/v1/stock", headers={"Authorization": "Bearer not-a-token"})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"

    def test_disabled_staff_user_is_refused(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """Disabling a user ends their sessions at once."""
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        headers = staff_headers(client, clerk.username)
        clerk.active = False
        db.flush()
        assert client.get("/api/v1/stock", headers=headers).status_code == 401

    def test_wrong_staff_password(self, client: TestClient, db: Session) -> None:
        """A wrong staff password is INVALID_CREDENTIALS."""
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        r = client.post("/api/v1/auth/staff/token", json={"username": clerk.username, "password": "x"})
        assert (r.status_code, r.json()["code"]) == (401, "INVALID_CREDENTIALS")

    def test_holder_token_cannot_use_staff_routes(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A holder is not staff."""
        h = factories.holder(db, settings)
        r = client.get("/api/v1/stock", headers=line_headers(client, h.msisdn))
        assert (r.status_code, r.json()["code"]) == (401, "STAFF_SIGN_IN_REQUIRED")
