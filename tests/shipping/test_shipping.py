"""Parcels: regions and delivery dates, booking, signed tracking webhooks, and what they do to the order."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.jobs.registry import JobContext
from simkeep.models import Notification, Parcel, ParcelEvent, ReplacementOrder
from simkeep.shipping import regions, webhooks
from simkeep.shipping.tasks import advance_demo_parcels
from tests.helpers import snapshot
from tests.replacements.conftest import World


def _post(world: World, path: str, headers: dict[str, str], body: dict[str, Any] | None = None) -> Any:
    r = world.client.post(path, json=body or {}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def shipped_order(world: World, *, tracking_number: str | None = None) -> str:
    """An online order approved, paid and handed to the carrier; its reference."""
    holder = world.holder_headers()
    ref = str(world.submit_online(holder)["reference"])
    _post(world, f"/api/v1/replacements/{ref}/decision", world.reviewer, {"approve": True, "reason": "ok"})
    _post(
        world, f"/api/v1/replacements/{ref}/payment", holder, {"method": "online", "payment_reference": ref}
    )
    body = {"tracking_number": tracking_number} if tracking_number else {}
    assert _post(world, f"/api/v1/replacements/{ref}/shipment", world.admin, body)["state"] == "shipped"
    return ref


def parcel_of(db: Session, ref: str) -> Parcel:
    db.expire_all()
    order = db.scalar(select(ReplacementOrder).where(ReplacementOrder.reference == ref))
    assert order is not None
    parcel = db.scalar(select(Parcel).where(Parcel.order_id == order.id).order_by(Parcel.id.desc()))
    assert parcel is not None
    return parcel


def state_of(db: Session, ref: str) -> str:
    db.expire_all()
    return str(db.scalar(select(ReplacementOrder.state).where(ReplacementOrder.reference == ref)))


def send_event(
    world: World,
    settings: Settings,
    parcel: Parcel,
    status: str,
    *,
    event_id: str | None = None,
    at: datetime | None = None,
    secret: bytes | None = None,
    timestamp: int | None = None,
    carrier: str | None = None,
    signed: bool = True,
) -> Any:
    """Post a tracking event as the carrier would, signed with its secret."""
    body = json.dumps(
        {
            "event_id": event_id or f"ev-{status}-{time.monotonic_ns()}",
            "tracking_number": parcel.tracking_number,
            "status": status,
            "occurred_at": (at or datetime.now(UTC)).isoformat(),
            "location": "Beijing hub",
        }
    ).encode()
    carrier = carrier or parcel.carrier
    ts = str(timestamp if timestamp is not None else int(time.time()))
    headers = {"content-type": "application/json"}
    if signed:
        headers["x-simkeep-timestamp"] = ts
        headers["x-simkeep-signature"] = webhooks.sign(
            secret or webhooks.secret_for(settings, carrier), ts, body
        )
    return world.client.post(f"/api/v1/shipping/{carrier}/events", content=body, headers=headers)


class TestRegions:
    """Region names as addresses write them, and days in transit."""

    @pytest.mark.parametrize(
        ("name", "code"),
        [("北京市", "BJ"), ("广东省", "GD"), ("Guangdong", "GD"), ("guangdong province", "GD"),
         ("新疆维吾尔自治区", "XJ"), ("香港特别行政区", "HK"), ("Inner Mongolia", "NM"), ("ＢＪ", "BJ")],
    )  # fmt: skip
    def test_known_region_is_recognised(self, name: str, code: str) -> None:
        """Chinese and English names, with or without their suffix, and codes give the region."""
        assert regions.region_code(name) == code

    def test_unknown_region_is_none(self) -> None:
        """A place that is no region gives None."""
        assert regions.region_code("Atlantis") is None

    def test_transit_days_are_three_to_seven(self, settings: Settings) -> None:
        """Every default lies between 3 and 7 days; the operator's table overrides them."""
        assert {regions.transit_days(settings, c) for c in regions.REGIONS} <= set(range(3, 8))
        custom = settings.model_copy(update={"shipping_eta_days": {"BJ": 1}})
        assert regions.transit_days(custom, "BJ") == 1
        assert regions.expected_on(custom, "BJ", shipped_on=date(2026, 1, 1)) == date(2026, 1, 2)


class TestBooking:
    """Shipping books a parcel with the carrier."""

    def test_demo_carrier_books_parcel_with_expected_date(self, world: World, db: Session) -> None:
        """Without a tracking number the configured carrier books one; the date follows the region."""
        ref = shipped_order(world)
        parcel = parcel_of(db, ref)
        assert (parcel.carrier, parcel.state, parcel.region) == ("demo", "label_created", "BJ")
        assert parcel.tracking_number.startswith("DEMO")
        assert parcel.expected_on == datetime.now(UTC).date() + timedelta(days=3)
        journey = world.client.get(f"/api/v1/replacements/{ref}/parcels", headers=world.holder_headers())
        assert journey.status_code == 200
        assert [e["state"] for e in journey.json()[0]["events"]] == ["label_created"]

    def test_given_tracking_number_is_recorded(self, world: World, db: Session) -> None:
        """Staff may record a parcel booked outside simkeep with its tracking number."""
        ref = shipped_order(world, tracking_number="SF1234567890")
        parcel = parcel_of(db, ref)
        assert (parcel.carrier, parcel.tracking_number) == ("manual", "SF1234567890")

    def test_unknown_region_is_refused_at_application(self, world: World, db: Session) -> None:
        """An address in no known region is refused with ADDRESS_INVALID before any order exists."""
        sub = world.holder.subscriber
        sub.delivery_address = {**(sub.delivery_address or {}), "region": "Atlantis"}
        db.flush()
        before = snapshot(db, exclude=("auth_tokens", "proof_attempts", "audit_log", "evidence_files",
                                       "one_time_codes", "notifications"))  # fmt: skip
        refused = world.submit_online(status=422)
        assert refused["code"] == "ADDRESS_INVALID"
        after = snapshot(db, exclude=("auth_tokens", "proof_attempts", "audit_log", "evidence_files",
                                      "one_time_codes", "notifications"))  # fmt: skip
        assert after == before


class TestWebhook:
    """Signed tracking events move the parcel and the order; bad calls change nothing."""

    def test_journey_to_delivery(self, world: World, db: Session, settings: Settings) -> None:
        """In transit, out for delivery, delivered: the order is delivered and the holder told to activate."""
        ref = shipped_order(world)
        parcel = parcel_of(db, ref)
        for status in ("in_transit", "out_for_delivery", "delivered"):
            r = send_event(world, settings, parcel, status)
            assert (r.status_code, r.json()["applied"]) == (200, True), r.text
        assert parcel_of(db, ref).state == "delivered"
        assert state_of(db, ref) == "delivered"
        templates = db.scalars(select(Notification.template).order_by(Notification.id)).all()
        assert "order_delivered" in templates

    def test_returned_parcel_puts_order_on_hold_and_reship_sends_it_again(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """A return holds the order for staff; reshipping books a new parcel."""
        ref = shipped_order(world)
        first = parcel_of(db, ref)
        assert send_event(world, settings, first, "returned").json()["applied"] is True
        assert state_of(db, ref) == "on_hold"
        again = _post(
            world, f"/api/v1/replacements/{ref}/reshipment", world.admin, {"tracking_number": "SF99887766"}
        )
        assert again["state"] == "shipped"
        assert parcel_of(db, ref).tracking_number == "SF99887766"

    def test_bad_signature_is_refused(self, world: World, db: Session, settings: Settings) -> None:
        """A body signed with another secret gets 401 and changes nothing."""
        ref = shipped_order(world)
        parcel = parcel_of(db, ref)
        before = snapshot(db)
        r = send_event(world, settings, parcel, "delivered", secret=b"not the secret")
        assert (r.status_code, r.json()["code"]) == (401, "WEBHOOK_SIGNATURE_INVALID")
        assert snapshot(db) == before

    def test_unsigned_call_is_refused(self, world: World, db: Session, settings: Settings) -> None:
        """A call without the signature headers gets 401 and changes nothing."""
        parcel = parcel_of(db, shipped_order(world))
        before = snapshot(db)
        r = send_event(world, settings, parcel, "delivered", signed=False)
        assert (r.status_code, r.json()["code"]) == (401, "WEBHOOK_UNSIGNED")
        assert snapshot(db) == before

    def test_stale_timestamp_is_refused(self, world: World, db: Session, settings: Settings) -> None:
        """A correctly signed call sent ten minutes ago gets 401 and changes nothing."""
        parcel = parcel_of(db, shipped_order(world))
        before = snapshot(db)
        r = send_event(world, settings, parcel, "delivered", timestamp=int(time.time()) - 600)
        assert (r.status_code, r.json()["code"]) == (401, "WEBHOOK_TIMESTAMP_STALE")
        assert snapshot(db) == before

    def test_replayed_event_is_refused(self, world: World, db: Session, settings: Settings) -> None:
        """The same event id a second time gets 409 and changes nothing."""
        parcel = parcel_of(db, shipped_order(world))
        assert send_event(world, settings, parcel, "in_transit", event_id="E1").status_code == 200
        before = snapshot(db)
        r = send_event(world, settings, parcel, "in_transit", event_id="E1")
        assert (r.status_code, r.json()["code"]) == (409, "WEBHOOK_REPLAYED")
        assert snapshot(db) == before

    def test_unknown_parcel_is_refused(self, world: World, db: Session, settings: Settings) -> None:
        """An event for a tracking number simkeep never booked gets 404 and changes nothing."""
        parcel = parcel_of(db, shipped_order(world))
        ghost = Parcel(tracking_number="DEMO000000000000", carrier=parcel.carrier)
        before = snapshot(db)
        r = send_event(world, settings, ghost, "delivered")
        assert (r.status_code, r.json()["code"]) == (404, "PARCEL_NOT_FOUND")
        assert snapshot(db) == before

    def test_malformed_event_is_refused(self, world: World, db: Session, settings: Settings) -> None:
        """A signed body that is no event gets 422 and changes nothing."""
        parcel = parcel_of(db, shipped_order(world))
        before = snapshot(db)
        r = send_event(world, settings, parcel, "teleported")
        assert (r.status_code, r.json()["code"]) == (422, "WEBHOOK_EVENT_INVALID")
        assert snapshot(db) == before

    def test_older_event_is_ignored(self, world: World, db: Session, settings: Settings) -> None:
        """An event older than the newest applied one is kept, not applied, and the order does not move."""
        ref = shipped_order(world)
        parcel = parcel_of(db, ref)
        send_event(world, settings, parcel, "out_for_delivery")
        r = send_event(world, settings, parcel, "delivered", at=datetime.now(UTC) - timedelta(days=2))
        assert r.json() == {"applied": False, "ignored_because": "older than the newest event applied"}
        assert (parcel_of(db, ref).state, state_of(db, ref)) == ("out_for_delivery", "shipped")
        kept = db.scalars(select(ParcelEvent).where(ParcelEvent.applied.is_(False))).all()
        assert len(kept) == 1

    def test_event_going_back_is_ignored(self, world: World, db: Session, settings: Settings) -> None:
        """In transit after out for delivery does not move the parcel back."""
        ref = shipped_order(world)
        parcel = parcel_of(db, ref)
        send_event(world, settings, parcel, "out_for_delivery")
        r = send_event(world, settings, parcel, "in_transit")
        assert r.json()["applied"] is False
        assert parcel_of(db, ref).state == "out_for_delivery"

    def test_events_after_delivery_are_ignored(self, world: World, db: Session, settings: Settings) -> None:
        """A return reported after the delivery changes neither the parcel nor the order."""
        ref = shipped_order(world)
        parcel = parcel_of(db, ref)
        send_event(world, settings, parcel, "delivered")
        assert send_event(world, settings, parcel, "returned").json()["applied"] is False
        assert (parcel_of(db, ref).state, state_of(db, ref)) == ("delivered", "delivered")


class TestDemoCarrier:
    """The built-in demo carrier moves its parcels along over time."""

    def test_demo_journey_reaches_delivery(self, world: World, db: Session, settings: Settings) -> None:
        """With no waiting between steps, three runs of the job deliver the parcel and the order."""
        ref = shipped_order(world)
        quick = settings.model_copy(update={"demo_carrier_step_minutes": 0})
        for _ in range(3):
            advance_demo_parcels(JobContext(db, quick, 0, "test", 1), {})
        assert parcel_of(db, ref).state == "delivered"
        assert state_of(db, ref) == "delivered"
        events = db.scalars(select(ParcelEvent.state).order_by(ParcelEvent.id)).all()
        assert [str(s) for s in events] == ["label_created", "in_transit", "out_for_delivery", "delivered"]

    def test_demo_parcels_wait_their_step_time(self, world: World, db: Session, settings: Settings) -> None:
        """A parcel whose last step is newer than the step time stays where it is."""
        ref = shipped_order(world)
        slow = settings.model_copy(update={"demo_carrier_step_minutes": 60})
        advance_demo_parcels(JobContext(db, slow, 0, "test", 1), {})
        assert parcel_of(db, ref).state == "label_created"
