"""Loss reports (挂失) and reinstatement (解挂) over the API."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import EmbeddedHlrSubscriber, LineStatus, ProofAttempt, SimStatus, StaffRole
from tests import factories
from tests.helpers import line_headers, snapshot, staff_headers


class TestReportLoss:
    """Reporting a SIM lost suspends it at once, with little proof, idempotently."""

    def test_anonymous_report_with_name_suspends_sim_and_network(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """The number plus the holder's name suspends the line, the SIM and the IMSI in the HLR."""
        h = factories.holder(db, settings)
        r = client.post(
            "/api/v1/loss-reports", json={"msisdn": h.msisdn, "real_name": "张 伟", "reason": "stolen"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "open"
        db.expire_all()
        assert h.line.status == LineStatus.SUSPENDED
        assert h.line.suspension_reason == "stolen"
        assert h.sim.status == SimStatus.SUSPENDED
        assert db.get(EmbeddedHlrSubscriber, h.sim.imsi).network_access_mode == "none"

    def test_second_report_changes_nothing(self, client: TestClient, db: Session, settings: Settings) -> None:
        """Reporting the same loss twice returns the open report with 200 and writes nothing new."""
        h = factories.holder(db, settings)
        body = {"msisdn": h.msisdn, "document_number": factories.DOCUMENT}
        first = client.post("/api/v1/loss-reports", json=body)
        before = snapshot(db)
        second = client.post("/api/v1/loss-reports", json=body)
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["reference"] == second.json()["reference"]
        assert snapshot(db) == before

    def test_wrong_name_is_refused_and_recorded(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A name that is not the holder's changes nothing, but the failed proof is kept."""
        h = factories.holder(db, settings)
        before = snapshot(db)
        r = client.post("/api/v1/loss-reports", json={"msisdn": h.msisdn, "real_name": "李四"})
        assert r.status_code == 403
        assert r.json()["code"] == "PROOF_FAILED"
        assert snapshot(db) == before
        attempts = db.query(ProofAttempt).filter_by(line_id=h.line.id, passed=False).all()
        assert [a.method for a in attempts] == ["biographical"]

    def test_unknown_number_answers_like_a_wrong_name(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """An unknown number gets the same answer as a known number with a wrong name (no enumeration)."""
        h = factories.holder(db, settings)
        known = client.post("/api/v1/loss-reports", json={"msisdn": h.msisdn, "real_name": "李四"})
        unknown = client.post("/api/v1/loss-reports", json={"msisdn": "+8613999999999", "real_name": "李四"})
        assert known.status_code == unknown.status_code == 403
        assert known.json()["detail"] == unknown.json()["detail"]

    def test_report_without_any_proof_is_refused(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """Without signing in, a name or a document number must come with the number."""
        h = factories.holder(db, settings)
        before = snapshot(db)
        r = client.post("/api/v1/loss-reports", json={"msisdn": h.msisdn})
        assert r.status_code == 422
        assert r.json()["code"] == "PROOF_MISSING"
        assert snapshot(db) == before

    def test_invalid_number_is_refused(self, client: TestClient, db: Session) -> None:
        """A malformed number gets INVALID_MSISDN and changes nothing."""
        before = snapshot(db)
        r = client.post("/api/v1/loss-reports", json={"msisdn": "12345", "real_name": "x"})
        assert r.status_code == 422
        assert r.json()["code"] == "INVALID_MSISDN"
        assert snapshot(db) == before

    def test_signed_in_holder_reports_without_more_proof(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A holder signed in to the line reports loss with no further details."""
        h = factories.holder(db, settings)
        r = client.post(
            "/api/v1/loss-reports", json={"msisdn": h.msisdn}, headers=line_headers(client, h.msisdn)
        )
        assert r.status_code == 201

    def test_holder_cannot_report_another_line(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A signed-in holder asking about someone else's line is told it does not exist."""
        a = factories.holder(db, settings)
        b = factories.holder(db, settings)
        before = snapshot(db)
        r = client.post(
            "/api/v1/loss-reports", json={"msisdn": b.msisdn}, headers=line_headers(client, a.msisdn)
        )
        assert r.status_code == 404
        assert snapshot(db) == before


class TestReinstate:
    """Lifting a loss suspension needs strong proof."""

    def _suspend(self, client: TestClient, msisdn: str) -> None:
        r = client.post(
            "/api/v1/loss-reports", json={"msisdn": msisdn, "document_number": factories.DOCUMENT}
        )
        assert r.status_code == 201

    def test_service_password_alone_is_not_enough(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """The service password alone is medium assurance: reinstatement is refused, nothing changes."""
        h = factories.holder(db, settings)
        self._suspend(client, h.msisdn)
        headers = line_headers(client, h.msisdn)
        before = snapshot(db)
        r = client.post(f"/api/v1/lines/{h.msisdn}/reinstatement", json={}, headers=headers)
        assert r.status_code == 403
        assert r.json()["code"] == "ASSURANCE_TOO_LOW"
        assert snapshot(db) == before

    def test_clerk_in_person_reinstates(self, client: TestClient, db: Session, settings: Settings) -> None:
        """A clerk who checked the document in person lifts the suspension; the SIM works again."""
        h = factories.holder(db, settings)
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        self._suspend(client, h.msisdn)
        r = client.post(
            f"/api/v1/lines/{h.msisdn}/reinstatement",
            json={"in_person_document_number": factories.DOCUMENT},
            headers=staff_headers(client, clerk.username),
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "lifted"
        db.expire_all()
        assert h.line.status == LineStatus.ACTIVE
        assert h.sim.status == SimStatus.ACTIVE
        assert db.get(EmbeddedHlrSubscriber, h.sim.imsi).network_access_mode == "cs+ps"

    def test_clerk_with_wrong_document_is_refused(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A document number that is not the holder's fails and changes nothing."""
        h = factories.holder(db, settings)
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        self._suspend(client, h.msisdn)
        headers = staff_headers(client, clerk.username)
        before = snapshot(db)
        r = client.post(
            f"/api/v1/lines/{h.msisdn}/reinstatement",
            json={"in_person_document_number": "110105194912310021"},
            headers=headers,
        )
        assert r.status_code == 403
        assert r.json()["code"] == "PROOF_FAILED"
        assert snapshot(db) == before

    def test_reinstating_an_active_line_is_refused(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A line that is not suspended for loss cannot be reinstated."""
        h = factories.holder(db, settings)
        clerk = factories.staff(db, StaffRole.CLERK, store_row=factories.store(db))
        headers = staff_headers(client, clerk.username)
        before = snapshot(db)
        r = client.post(
            f"/api/v1/lines/{h.msisdn}/reinstatement",
            json={"in_person_document_number": factories.DOCUMENT},
            headers=headers,
        )
        assert r.status_code == 409
        assert r.json()["code"] == "NO_OPEN_LOSS_REPORT"
        assert snapshot(db) == before
