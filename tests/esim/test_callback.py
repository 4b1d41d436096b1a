"""handleDownloadProgressInfo: the SM-DP+'s callbacks, authenticated, recorded once, never backwards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simkeep.app import create_app
from simkeep.config import Settings
from simkeep.esim import protocol as p
from simkeep.esim import service
from simkeep.models import (
    AuditEntry,
    EsimProfile,
    EsimProfileState,
    EsimProgressEvent,
    Job,
    OrderState,
    ReplacementOrder,
    SimKind,
)
from simkeep.notifications.transports import read_outbox
from tests import factories
from tests.esim.conftest import CALLBACK_TOKEN, Smdp, esim_settings, paid_esim_order, run_jobs

PATH = f"{p.BASE_PATH}/{p.HANDLE_DOWNLOAD_PROGRESS_INFO}"
AUTH = {"Authorization": f"Bearer {CALLBACK_TOKEN}", p.ADMIN_PROTOCOL_HEADER: p.ADMIN_PROTOCOL}
S = EsimProfileState


def _released(db: Session, settings: Settings, smdp: Smdp, outbox: Path) -> tuple[ReplacementOrder, str, str]:
    """A released eSIM order, its matching id and the confirmation code the holder was sent."""
    esim = factories.sim(db, kind=SimKind.ESIM)
    smdp.load(esim.iccid)
    order = paid_esim_order(db, settings, factories.holder(db, settings))
    run_jobs(db, settings)
    profile = _profile(db, order)
    sent = [m for m in read_outbox(outbox) if m.template == "esim_confirmation_code"]
    found = re.search(r"\b(\d{8})\b", sent[-1].body)
    assert found is not None
    assert profile.matching_id is not None
    return order, profile.matching_id, found.group(1)


def _profile(db: Session, order: ReplacementOrder) -> EsimProfile:
    db.expire_all()
    found = db.scalar(select(EsimProfile).where(EsimProfile.order_id == order.id))
    assert found is not None
    return found


def _events(db: Session) -> int:
    return int(db.scalar(select(func.count()).select_from(EsimProgressEvent)) or 0)


def _post(client: TestClient, event: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post(PATH, json=event, headers=AUTH if headers is None else headers)


def _status(r: Any) -> str:
    return str(r.json()["header"]["functionExecutionStatus"]["status"])


class TestAuthentication:
    """Only the SM-DP+ with the configured token may call."""

    def test_missing_token(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """No Authorization header: 401, nothing recorded, the profile unchanged."""
        order, matching, code = _released(db, settings, smdp, outbox)
        events = smdp.download(matching, code, deliver=False)["events"]
        r = _post(client, events[-1], headers={p.ADMIN_PROTOCOL_HEADER: p.ADMIN_PROTOCOL})
        assert r.status_code == 401
        assert _status(r) == "Failed"
        assert _events(db) == 0
        assert _profile(db, order).state == S.RELEASED

    def test_wrong_token(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """A wrong bearer token: 401 and nothing recorded."""
        _order, matching, code = _released(db, settings, smdp, outbox)
        events = smdp.download(matching, code, deliver=False)["events"]
        r = _post(client, events[-1], headers={"Authorization": "Bearer not-the-token"})
        assert r.status_code == 401
        assert _events(db) == 0

    def test_no_token_configured_refuses_everyone(
        self, db: Session, smdp: Smdp, outbox: Path, settings: Settings
    ) -> None:
        """With no callback token configured, even an empty bearer token is refused."""
        bare = esim_settings(settings.database_url, outbox, smdp.url, esim_callback_token="")
        with TestClient(create_app(bare)) as client:
            r = client.post(PATH, json={}, headers={"Authorization": "Bearer "})
            assert r.status_code == 401
            r = client.post(PATH, json={}, headers=AUTH)
            assert r.status_code == 401


class TestProgress:
    """Recording the events and moving the profile."""

    def test_download_and_install(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """Each step is answered Executed-Success; the profile ends installed and the activation is queued."""
        order, matching, code = _released(db, settings, smdp, outbox)
        events = smdp.download(matching, code, deliver=False)["events"]
        assert [e["notificationPointId"] for e in events] == [1, 3, 4]
        for event in events:
            r = _post(client, event)
            assert (r.status_code, _status(r)) == (200, "Executed-Success")
        profile = _profile(db, order)
        assert profile.state == S.INSTALLED
        assert profile.installed_at is not None
        assert profile.eid == events[-1]["eid"]
        assert _events(db) == 3
        assert db.scalar(select(Job).where(Job.kind == service.ACTIVATE_JOB)) is not None

    def test_duplicate_is_recorded_once(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """A repeated event is answered as a success and neither recorded nor applied twice."""
        order, matching, code = _released(db, settings, smdp, outbox)
        events = smdp.download(matching, code, deliver=False, duplicate=True)["events"]
        assert len(events) == 6
        for event in events:
            r = _post(client, event)
            assert (r.status_code, _status(r)) == (200, "Executed-Success")
        assert _events(db) == 3
        assert db.scalar(select(func.count()).select_from(Job).where(Job.kind == service.ACTIVATE_JOB)) == 1
        installed = db.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "esim.profile_installed")
        )
        assert installed == 1
        assert _profile(db, order).state == S.INSTALLED

    def test_out_of_order_never_moves_backwards(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """An event older than the profile's state (download after install) is kept but changes nothing."""
        order, matching, code = _released(db, settings, smdp, outbox)
        events = smdp.download(matching, code, deliver=False, reverse=True)["events"]
        assert [e["notificationPointId"] for e in events] == [4, 3, 1]
        for event in events:
            assert _status(_post(client, event)) == "Executed-Success"
        assert _profile(db, order).state == S.INSTALLED
        assert _events(db) == 3

    def test_unknown_iccid(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """An event for an ICCID simkeep does not know is kept (for staff) and answered Failed 8.2.1 / 3.9."""
        _order, matching, code = _released(db, settings, smdp, outbox)
        event = smdp.download(matching, code, deliver=False)["events"][-1]
        event["iccid"] = factories.make_iccid(880_001)
        r = _post(client, event)
        status = r.json()["header"]["functionExecutionStatus"]
        assert (r.status_code, status["status"], status["statusCodeData"]["reasonCode"]) == (
            200,
            "Failed",
            "3.9",
        )
        row = db.scalar(select(EsimProgressEvent).where(EsimProgressEvent.iccid == event["iccid"]))
        assert row is not None
        assert row.profile_id is None
        assert (
            db.scalar(select(AuditEntry).where(AuditEntry.action == "esim.progress_unknown_iccid"))
            is not None
        )
        again = _post(client, event)
        assert _status(again) == "Failed"
        same = (
            select(func.count())
            .select_from(EsimProgressEvent)
            .where(EsimProgressEvent.iccid == event["iccid"])
        )
        assert db.scalar(same) == 1

    def test_malformed_event_records_nothing(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """An event without an ICCID or with a bad timestamp is answered Failed and nothing is recorded."""
        _order, matching, code = _released(db, settings, smdp, outbox)
        event = smdp.download(matching, code, deliver=False)["events"][-1]
        for bad in (
            {**event, "iccid": None},
            {**event, "timestamp": "yesterday"},
            {**event, "notificationPointStatus": {}},
        ):
            r = _post(client, bad)
            assert (r.status_code, _status(r)) == (200, "Failed")
        assert _events(db) == 0

    def test_failed_install_then_a_retry_of_the_phone(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """A failed installation puts the profile in error with its codes; the next try installs it."""
        order, matching, code = _released(db, settings, smdp, outbox)
        for event in smdp.download(matching, code, deliver=False, failAt=4)["events"]:
            _post(client, event)
        profile = _profile(db, order)
        assert (profile.state, profile.error_subject, profile.error_reason) == (S.ERROR, "8.2", "4.2")
        assert db.scalar(select(Job).where(Job.kind == service.ACTIVATE_JOB)) is None
        for event in smdp.download(matching, code, deliver=False)["events"]:
            _post(client, event)
        profile = _profile(db, order)
        assert (profile.state, profile.error_message) == (S.INSTALLED, None)

    def test_wrong_confirmation_code(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """A wrong confirmation code typed on the phone shows as an error 8.2.7 / 6.1 on the profile."""
        order, matching, _code = _released(db, settings, smdp, outbox)
        for event in smdp.download(matching, "00000000", deliver=False)["events"]:
            _post(client, event)
        profile = _profile(db, order)
        assert (profile.state, profile.error_subject, profile.error_reason) == (S.ERROR, "8.2.7", "6.1")

    def test_cancelled_profile_ignores_events(
        self, client: TestClient, db: Session, settings: Settings, smdp: Smdp, outbox: Path
    ) -> None:
        """A late event for the profile of a cancelled order is kept and changes nothing."""
        order, matching, code = _released(db, settings, smdp, outbox)
        events = smdp.download(matching, code, deliver=False)["events"]
        profile = _profile(db, order)
        profile.state = S.CANCELLED
        db.flush()
        for event in events:
            assert _status(_post(client, event)) == "Executed-Success"
        assert _profile(db, order).state == S.CANCELLED
        assert order.state == OrderState.SIM_ASSIGNED
        assert db.scalar(select(Job).where(Job.kind == service.ACTIVATE_JOB)) is None
