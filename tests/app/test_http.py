"""HTTP behaviour shared by every route: body limits, problem details, request ids, OpenAPI."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.config import Settings
from tests import factories
from tests.helpers import snapshot


class TestBodyLimit:
    """Oversized requests are refused before they are read."""

    def test_declared_oversized_body_is_refused(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A body over the limit gets 413 REQUEST_TOO_LARGE and changes nothing."""
        h = factories.holder(db, settings)
        before = snapshot(db)
        big = "x" * (settings.max_request_bytes + 10)
        r = client.post("/api/v1/loss-reports", json={"msisdn": h.msisdn, "real_name": big})
        assert r.status_code == 413
        assert r.json()["code"] == "REQUEST_TOO_LARGE"
        assert snapshot(db) == before

    def test_chunked_oversized_body_is_refused(self, client: TestClient, settings: Settings) -> None:
        """A body sent without a length is counted as it arrives."""

        def chunks() -> object:
            for _ in range(settings.max_request_bytes // 10_000 + 2):
                yield b"x" * 10_000

        r = client.post(
            "/api/v1/loss-reports", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 413

    def test_long_field_is_a_validation_error(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A field over its maximum length is VALIDATION_FAILED, and the value is not echoed back."""
        h = factories.holder(db, settings)
        r = client.post("/api/v1/loss-reports", json={"msisdn": h.msisdn, "real_name": "名" * 500})
        assert r.status_code == 422
        assert r.json()["code"] == "VALIDATION_FAILED"
        assert "名名名" not in r.text


class TestProblems:
    """Errors are RFC 9457 problem details."""

    def test_malformed_json(self, client: TestClient) -> None:
        """Broken JSON is a 422 problem document."""
        r = client.post(
            "/api/v1/loss-reports", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert {"type", "title", "status", "code", "detail", "instance"} <= set(r.json())

    def test_request_id_is_echoed(self, client: TestClient) -> None:
        """The caller's x-request-id comes back (and one is made when absent)."""
        assert client.get("/healthz", headers={"x-request-id": "abc123"}).headers["x-request-id"] == "abc123"
        assert len(client.get("/healthz").headers["x-request-id"]) == 32

    def test_openapi_lists_the_workflow(self, client: TestClient) -> None:
        """The OpenAPI document behind /docs covers the replacement workflow."""
        paths = client.get("/openapi.json").json()["paths"]
        assert "/api/v1/replacements/{reference}/activation" in paths
        assert client.get("/docs").status_code == 200


class TestStartup:
    """What the app says when it starts."""

    def test_missing_tesseract_is_announced(self, settings: Settings) -> None:
        """Without tesseract the start-up log says document photos go to review, and the app still serves."""
        from structlog.testing import capture_logs

        from simkeep.app import create_app

        broken = settings.model_copy(update={"tesseract_cmd": "/nonexistent/bin/tesseract"})
        app = create_app(broken)
        with capture_logs() as logs, TestClient(app) as c:
            assert c.get("/healthz").status_code == 200
        warnings = [e for e in logs if e["event"] == "ocr.unavailable"]
        assert len(warnings) == 1
        assert "sent to review" in warnings[0]["detail"]

    def test_installed_tesseract_gives_no_warning(self, settings: Settings) -> None:
        """With tesseract and its language data installed nothing is said about OCR."""
        from structlog.testing import capture_logs

        from simkeep.app import create_app

        with capture_logs() as logs, TestClient(create_app(settings)) as c:
            assert c.get("/healthz").status_code == 200
        assert not [e for e in logs if e["event"] == "ocr.unavailable"]
