"""Forged calls from the outside systems simkeep trusts: the parcel carrier and the SM-DP+.

The carrier's tracking webhooks are signed (HMAC-SHA256 of the timestamp and body, per carrier); the SM-DP+'s
handleDownloadProgressInfo callback carries a bearer token of its own. tests/shipping and tests/esim cover
the plain forgeries (no signature, a wrong one, a stale timestamp, a replayed event id, a missing or wrong
token). This suite adds the ones that reuse something genuine: another carrier's valid secret, a captured
signature under a new timestamp, simkeep's own session tokens presented to the SM-DP+ callback, and the
right token in the wrong place. Whatever a webhook says, it never moves a number: even a genuine
"delivered" event leaves the line on its old SIM until the holder activates. (SMS and e-mail delivery
receipts reach simkeep only over the SMPP session simkeep itself opens to the SMS centre, so there is no
inbound receipt endpoint to forge; see tests/notifications/test_receipts.py.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.esim import protocol
from simkeep.models import EsimProgressEvent, Parcel, ReplacementOrder
from simkeep.shipping import webhooks
from tests import factories
from tests.replacements.conftest import World
from tests.security.conftest import assert_line_untouched, bearer_of, rows

ESIM_PATH = f"{protocol.BASE_PATH}/{protocol.HANDLE_DOWNLOAD_PROGRESS_INFO}"
CALLBACK_TOKEN = "sm-dp-callback-token-0123456789abcdef"


def parcel_of(db: Session, reference: str) -> Parcel:
    """The parcel of an order."""
    db.expire_all()
    order = db.scalars(select(ReplacementOrder).where(ReplacementOrder.reference == reference)).one()
    return db.scalars(select(Parcel).where(Parcel.order_id == order.id)).one()


def event_body(parcel: Parcel, status: str) -> bytes:
    """A tracking event as the carrier sends it."""
    return json.dumps(
        {
            "event_id": f"ev-{status}-{time.monotonic_ns()}",
            "tracking_number": parcel.tracking_number,
            "status": status,
            "occurred_at": datetime.now(UTC).isoformat(),
            "location": "Beijing hub",
        }
    ).encode()


def post_event(world: World, carrier: str, body: bytes, timestamp: str, signature: str) -> Any:
    """Post a tracking event with the given signature headers."""
    return world.client.post(
        f"/api/v1/shipping/{carrier}/events",
        content=body,
        headers={
            "content-type": "application/json",
            "x-simkeep-timestamp": timestamp,
            "x-simkeep-signature": signature,
        },
    )


@pytest.fixture
def refusals() -> Iterator[list[MutableMapping[str, Any]]]:
    """The ``webhook.refused`` log events written inside the test."""
    with structlog.testing.capture_logs() as logs:
        yield logs


class TestCarrierWebhookForgery:
    """Tracking events that reuse something genuine."""

    def test_another_carriers_secret_cannot_move_this_carriers_parcel(
        self,
        world: World,
        db: Session,
        settings: Settings,
        victim: factories.Holder,
        victim_order: str,
        refusals: list[MutableMapping[str, Any]],
    ) -> None:
        """A party holding a valid secret of another carrier signs a "delivered" event for the victim's
        parcel and posts it under its own carrier name: PARCEL_NOT_FOUND, the parcel and the order stay as
        they were, and the refusal is logged."""
        parcel = parcel_of(db, victim_order)
        other = "other-carrier"
        assert other != parcel.carrier
        body = event_body(parcel, "delivered")
        ts = str(int(time.time()))
        before = rows(db)
        r = post_event(world, other, body, ts, webhooks.sign(webhooks.secret_for(settings, other), ts, body))
        assert (r.status_code, r.json()["code"]) == (404, "PARCEL_NOT_FOUND")
        assert rows(db) == before
        assert [e["error"] for e in refusals if e["event"] == "webhook.refused"] == ["PARCEL_NOT_FOUND"]

    def test_captured_signature_under_a_new_timestamp_is_refused(
        self,
        world: World,
        db: Session,
        settings: Settings,
        victim_order: str,
        refusals: list[MutableMapping[str, Any]],
    ) -> None:
        """A signature captured from a genuine (old) call, sent again with a fresh timestamp to pass the
        five-minute window: WEBHOOK_SIGNATURE_INVALID, nothing recorded, the refusal logged."""
        parcel = parcel_of(db, victim_order)
        body = event_body(parcel, "returned")
        old = str(int(time.time()) - 3600)
        captured = webhooks.sign(webhooks.secret_for(settings, parcel.carrier), old, body)
        before = rows(db)
        r = post_event(world, parcel.carrier, body, str(int(time.time())), captured)
        assert (r.status_code, r.json()["code"]) == (401, "WEBHOOK_SIGNATURE_INVALID")
        assert rows(db) == before
        assert [e["error"] for e in refusals if e["event"] == "webhook.refused"] == [
            "WEBHOOK_SIGNATURE_INVALID"
        ]

    def test_signed_body_with_another_tracking_number_is_refused(
        self, world: World, db: Session, settings: Settings, victim_order: str
    ) -> None:
        """A genuine signed event for one parcel, its body edited to name the victim's parcel: the signature
        no longer matches, nothing changes."""
        parcel = parcel_of(db, victim_order)
        genuine = json.loads(event_body(parcel, "delivered"))
        genuine["tracking_number"] = "SOMEONE-ELSES-1"
        signed_body = json.dumps(genuine).encode()
        ts = str(int(time.time()))
        signature = webhooks.sign(webhooks.secret_for(settings, parcel.carrier), ts, signed_body)
        edited = signed_body.replace(b"SOMEONE-ELSES-1", parcel.tracking_number.encode())
        before = rows(db)
        r = post_event(world, parcel.carrier, edited, ts, signature)
        assert (r.status_code, r.json()["code"]) == (401, "WEBHOOK_SIGNATURE_INVALID")
        assert rows(db) == before

    def test_even_a_genuine_delivery_does_not_move_the_number(
        self, world: World, db: Session, settings: Settings, victim: factories.Holder, victim_order: str
    ) -> None:
        """A correctly signed "delivered" event (a compromised carrier, or a parcel handed to the wrong
        person) marks the parcel delivered and nothing more: the victim's number stays on the old SIM until
        the victim activates with their own session and the ICCID digits."""
        parcel = parcel_of(db, victim_order)
        body = event_body(parcel, "delivered")
        ts = str(int(time.time()))
        r = post_event(
            world,
            parcel.carrier,
            body,
            ts,
            webhooks.sign(webhooks.secret_for(settings, parcel.carrier), ts, body),
        )
        assert r.status_code == 200, r.text
        db.expire_all()
        order = db.scalars(select(ReplacementOrder).where(ReplacementOrder.reference == victim_order)).one()
        assert str(order.state) == "delivered"
        assert order.activated_at is None
        assert_line_untouched(db, victim)


@pytest.fixture
def esim_callback(world: World, settings: Settings) -> Iterator[None]:
    """The app with an SM-DP+ callback token configured."""
    state = world.client.app.state  # type: ignore[attr-defined]
    original: Settings = state.settings
    state.settings = settings.model_copy(update={"esim_callback_token": CALLBACK_TOKEN})
    try:
        yield
    finally:
        state.settings = original


def _progress(iccid: str) -> dict[str, Any]:
    return {
        "header": {"functionRequesterIdentifier": "smdp", "functionCallIdentifier": "call-1"},
        "eid": "89049032123451234512345678901234",
        "iccid": iccid,
        "profileType": "keep",
        "timestamp": datetime.now(UTC).isoformat(),
        "notificationPointId": 4,
        "notificationPointStatus": {"status": "Executed-Success"},
    }


class TestSmdpCallbackForgery:
    """handleDownloadProgressInfo called by someone other than the SM-DP+."""

    @pytest.mark.parametrize("who", ["holder", "reviewer", "admin"])
    def test_simkeep_session_tokens_are_not_the_smdp(
        self, world: World, db: Session, esim_callback: None, who: str
    ) -> None:
        """A holder's or staff user's valid simkeep bearer token is not the SM-DP+'s: 401 "unknown caller",
        no progress event recorded, nothing changed."""
        token = {
            "holder": bearer_of(world.holder_headers()),
            "reviewer": bearer_of(world.reviewer),
            "admin": bearer_of(world.admin),
        }[who]
        before = rows(db)
        r = world.client.post(
            ESIM_PATH,
            json=_progress(world.esims[0].iccid),
            headers={
                "Authorization": f"Bearer {token}",
                protocol.ADMIN_PROTOCOL_HEADER: protocol.ADMIN_PROTOCOL,
            },
        )
        assert r.status_code == 401
        assert r.json()["header"]["functionExecutionStatus"]["status"] == "Failed"
        assert rows(db) == before
        assert int(db.scalar(select(func.count()).select_from(EsimProgressEvent)) or 0) == 0

    @pytest.mark.parametrize(
        ("where", "headers", "params"),
        [
            ("basic scheme", {"Authorization": f"Basic {CALLBACK_TOKEN}"}, {}),
            ("no scheme", {"Authorization": CALLBACK_TOKEN}, {}),
            ("query string", {}, {"access_token": CALLBACK_TOKEN}),
            ("other header", {"X-Api-Key": CALLBACK_TOKEN}, {}),
        ],
    )
    def test_right_token_in_the_wrong_place_is_refused(
        self,
        world: World,
        db: Session,
        esim_callback: None,
        where: str,
        headers: dict[str, str],
        params: dict[str, str],
    ) -> None:
        """The right token leaked into a URL, a log or another header and replayed there is refused:
        only ``Authorization: Bearer`` counts. Nothing is recorded."""
        before = rows(db)
        r = world.client.post(
            ESIM_PATH,
            json=_progress(world.esims[0].iccid),
            params=params,
            headers={**headers, protocol.ADMIN_PROTOCOL_HEADER: protocol.ADMIN_PROTOCOL},
        )
        assert r.status_code == 401, where
        assert rows(db) == before
        genuine = world.client.post(
            ESIM_PATH,
            json=_progress(world.esims[0].iccid),
            headers={
                "Authorization": f"Bearer {CALLBACK_TOKEN}",
                protocol.ADMIN_PROTOCOL_HEADER: protocol.ADMIN_PROTOCOL,
            },
        )
        assert genuine.status_code == 200  # the same call, rightly authenticated, gets through
