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


class TestUploadLimit:
    """Photo uploads may be as large as the upload limit, beyond the limit of other requests."""

    def test_photo_over_a_megabyte_is_accepted(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A 2-3 MB phone photo is taken by the evidence upload, though other bodies stop at 1 MB."""
        import io
        import os

        from PIL import Image

        from tests.helpers import line_headers

        h = factories.holder(db, settings)
        noise = Image.frombytes("RGB", (1200, 900), os.urandom(1200 * 900 * 3))
        buffer = io.BytesIO()
        noise.save(buffer, format="PNG")
        data = buffer.getvalue()
        assert settings.max_request_bytes < len(data) < settings.upload_max_bytes
        r = client.post(
            "/api/v1/evidence",
            headers=line_headers(client, h.msisdn),
            data={"kind": "selfie"},
            files={"file": ("me.png", data, "image/png")},
        )
        assert r.status_code == 201, r.text

    def test_upload_over_the_upload_limit_is_refused(self, client: TestClient, settings: Settings) -> None:
        """A body declared larger than the upload limit is refused before it is read."""
        r = client.post(
            "/api/v1/evidence",
            content=b"x" * 10,
            headers={"content-length": str(settings.upload_max_bytes + 200_000), "content-type": "image/png"},
        )
        assert (r.status_code, r.json()["code"]) == (413, "REQUEST_TOO_LARGE")
