"""The keep-alive API and the activity import."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.keepalive.importer import import_activity
from simkeep.models import StaffRole, UsageEvent
from tests import factories
from tests.helpers import snapshot, staff_headers


class TestUsageEventApi:
    """POST /api/v1/usage-events."""

    def test_admin_records_event(self, client: TestClient, db: Session, settings: Settings) -> None:
        """An admin posts an event; a repeat is answered as a duplicate."""
        h = factories.holder(db, settings)
        admin = factories.staff(db, StaffRole.ADMIN)
        headers = staff_headers(client, admin.username)
        body = {"event_id": "api-1", "msisdn": h.msisdn, "kind": "sms", "occurred_at": "2026-11-01T00:00:00Z"}
        r = client.post("/api/v1/usage-events", json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert not r.json()["duplicate"]
        r = client.post("/api/v1/usage-events", json=body, headers=headers)
        assert r.json()["duplicate"]

    def test_bad_event_and_clerk_refused(self, client: TestClient, db: Session, settings: Settings) -> None:
        """A malformed event is 422 with a code; a clerk is 403; nothing changes."""
        h = factories.holder(db, settings)
        admin = factories.staff(db, StaffRole.ADMIN)
        clerk = factories.staff(db, StaffRole.CLERK)
        before = snapshot(db)
        body = {"event_id": "api-2", "msisdn": h.msisdn, "kind": "fax", "occurred_at": "2026-11-01T00:00:00Z"}
        r = client.post("/api/v1/usage-events", json=body, headers=staff_headers(client, admin.username))
        assert r.status_code == 422
        assert "USAGE_EVENT_INVALID" in r.text
        body["kind"] = "sms"
        r = client.post("/api/v1/usage-events", json=body, headers=staff_headers(client, clerk.username))
        assert r.status_code == 403
        assert snapshot(db) == before

    def test_a_time_holding_a_nul_is_refused(
        self, client: TestClient, db: Session, settings: Settings
    ) -> None:
        """A NUL inside or after the time (Python 3.11's parser would read up to it) is a malformed time: 422
        with a code, and nothing changes."""
        h = factories.holder(db, settings)
        headers = staff_headers(client, factories.staff(db, StaffRole.ADMIN).username)
        before = snapshot(db)
        for stamp in ("2026-11-01T00:00:00+00:00\x00", "2026-11-01T00:00:00\x00+00:00"):
            body = {"event_id": "api-nul", "msisdn": h.msisdn, "kind": "sms", "occurred_at": stamp}
            r = client.post("/api/v1/usage-events", json=body, headers=headers)
            assert r.status_code == 422, r.text
            assert "USAGE_EVENT_INVALID" in r.text
            assert "occurred_at" in r.text
        assert snapshot(db) == before

    def test_undo_not_recycled(self, client: TestClient, db: Session, settings: Settings) -> None:
        """Undo of a live line is a 409 with a code."""
        h = factories.holder(db, settings)
        admin = factories.staff(db, StaffRole.ADMIN)
        r = client.post(
            f"/api/v1/lines/{h.msisdn}/recycling:undo", headers=staff_headers(client, admin.username)
        )
        assert r.status_code == 409
        assert "LINE_NOT_RECYCLED" in r.text


class TestActivityImport:
    """simkeep keepalive import-activity."""

    def test_csv_and_jsonl(self, fresh: tuple[Engine, Settings], tmp_path: Path) -> None:
        """Good rows imported, duplicates counted once, bad rows reported with line numbers."""
        engine, settings = fresh
        with Session(engine) as db:
            h = factories.holder(db, settings)
            msisdn = h.msisdn
            db.commit()
        csv = tmp_path / "a.csv"
        csv.write_text(
            "event_id,msisdn,kind,occurred_at\n"
            f"e1,{msisdn},sms,2026-11-01T00:00:00Z\n"
            f"e1,{msisdn},sms,2026-11-01T00:00:00Z\n"
            f"e2,{msisdn},fax,2026-11-01T00:00:00Z\n"
            "e3,+8613999999999,sms,2026-11-01T00:00:00Z\n"
        )
        result = import_activity(engine, settings, csv)
        assert (result.imported, result.already_present, result.rejected) == (1, 1, 2)
        assert sorted(e.line for e in result.errors) == [4, 5]
        jsonl = tmp_path / "a.jsonl"
        jsonl.write_text(
            json.dumps(
                {"event_id": "j1", "msisdn": msisdn, "kind": "data", "occurred_at": "2026-11-02T00:00:00Z"}
            )
            + "\nnot json\n"
        )
        result = import_activity(engine, settings, jsonl)
        assert (result.imported, result.rejected) == (1, 1)
        with Session(engine) as db:
            assert db.scalar(select(func.count()).select_from(UsageEvent)) == 2
