"""The replacement workflow refuses what it must, and a refusal changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from simkeep.db.base import utcnow
from simkeep.models import AuditEntry, LineStatus, Notification, Payment, ReplacementOrder, SimStatus
from tests import factories
from tests.helpers import snapshot
from tests.replacements.conftest import World

PLACEHOLDER_APPLICATION = {
    "document_number": factories.DOCUMENT,
    "document_photo": "EV-NONE",
    "selfie": "EV-NONE",
    "one_time_code": "000000",
}


def _submit_online(world: World, headers: dict[str, str], channel: str = "online_mail") -> dict[str, object]:
    return world.submit_online(headers, channel=channel)


def _refused(
    client: TestClient,
    db: Session,
    path: str,
    headers: dict[str, str],
    body: dict[str, object],
    status: int,
    code: str,
) -> None:
    before = snapshot(db)
    r = client.post(path, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert snapshot(db) == before


class TestSubmissionGuards:
    """Who may apply, and when."""

    def test_double_submit_is_refused(self, world: World, db: Session) -> None:
        """A second application while one is open is REPLACEMENT_ALREADY_OPEN and changes nothing."""
        holder = world.holder_headers()
        _submit_online(world, holder)
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            holder,
            {"msisdn": world.holder.msisdn, "channel": "online_mail", **world.application(holder)},
            409,
            "REPLACEMENT_ALREADY_OPEN",
        )

    def test_cooldown_spans_online_channels(self, world: World, db: Session) -> None:
        """After an online order, switching to eSIM within 30 days is refused (COOLDOWN_ACTIVE)."""
        holder = world.holder_headers()
        ref = _submit_online(world, holder)["reference"]
        world.client.post(
            f"/api/v1/replacements/{ref}/cancellation", json={"reason": "changed my mind"}, headers=holder
        )
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            holder,
            {"msisdn": world.holder.msisdn, "channel": "esim", **world.application(holder)},
            409,
            "COOLDOWN_ACTIVE",
        )

    def test_cooldown_ends_after_30_days(self, world: World, db: Session) -> None:
        """An online order older than the cool-down no longer blocks a new one."""
        holder = world.holder_headers()
        ref = _submit_online(world, holder)["reference"]
        world.client.post(f"/api/v1/replacements/{ref}/cancellation", json={"reason": "x"}, headers=holder)
        order = db.query(ReplacementOrder).filter_by(reference=ref).one()
        order.created_at = utcnow() - timedelta(days=31)
        db.flush()
        _submit_online(world, holder, "esim")

    def test_store_is_not_limited_by_cooldown(self, world: World, db: Session) -> None:
        """The cool-down applies to online replacements; a clerk can still serve the holder in person."""
        holder = world.holder_headers()
        ref = _submit_online(world, holder)["reference"]
        world.client.post(f"/api/v1/replacements/{ref}/cancellation", json={"reason": "x"}, headers=holder)
        r = world.client.post(
            "/api/v1/replacements",
            headers=world.clerk,
            json={
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        assert r.status_code == 201

    def test_sim_change_lock_refuses(self, world: World, db: Session) -> None:
        """With the SIM-change lock on, no replacement is taken; the attempt is audited, holder alerted."""
        world.holder.line.sim_change_lock = True
        db.flush()
        before = snapshot(db, exclude=("auth_tokens", "proof_attempts", "audit_log", "notifications"))
        r = world.client.post(
            "/api/v1/replacements",
            headers=world.clerk,
            json={
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        assert (r.status_code, r.json()["code"]) == (423, "SIM_CHANGE_LOCKED")
        assert snapshot(db, exclude=("auth_tokens", "proof_attempts", "audit_log", "notifications")) == before
        assert db.query(AuditEntry).filter_by(action="replacement.refused_locked").count() == 1
        assert [n.template for n in db.query(Notification).all()] == ["sim_change_blocked"]

    def test_recycled_line_is_refused(self, world: World, db: Session) -> None:
        """A recycled number cannot get a new SIM."""
        world.holder.line.status = LineStatus.RECYCLED
        db.flush()
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.clerk,
            {
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
            409,
            "LINE_RECYCLED",
        )

    def test_unknown_line_is_refused(self, world: World, db: Session) -> None:
        """An unknown number is LINE_NOT_FOUND."""
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.clerk,
            {
                "msisdn": "+8613912345678",
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
            404,
            "LINE_NOT_FOUND",
        )

    def test_invalid_msisdn_is_refused(self, world: World, db: Session) -> None:
        """A number that is not E.164 is INVALID_MSISDN."""
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.clerk,
            {
                "msisdn": "not-a-number",
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
            422,
            "INVALID_MSISDN",
        )

    def test_store_order_needs_the_holders_document(self, world: World, db: Session) -> None:
        """A clerk typing a document that is not the holder's is refused (failed proof kept)."""
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.clerk,
            {
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": "110105194912310021",
            },
            403,
            "PROOF_FAILED",
        )

    def test_holder_cannot_use_store_channel(self, world: World, db: Session) -> None:
        """Only a clerk can make a store replacement."""
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.holder_headers(),
            {
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
            403,
            "ACTOR_NOT_ALLOWED",
        )

    def test_anonymous_cannot_apply(self, world: World, db: Session) -> None:
        """Applying needs a signed-in holder or clerk."""
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            {},
            {"msisdn": world.holder.msisdn, "channel": "online_mail"},
            401,
            "SIGN_IN_REQUIRED",
        )

    def test_holder_cannot_apply_for_another_line(self, world: World, db: Session, settings: object) -> None:
        """A holder signed in to one line cannot apply for another's (answered as not found)."""
        other = factories.holder(db, world.client.app.state.settings)
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.holder_headers(),
            {"msisdn": other.msisdn, "channel": "online_mail", **PLACEHOLDER_APPLICATION},
            404,
            "LINE_NOT_FOUND",
        )

    def test_online_application_without_evidence_is_refused(self, world: World, db: Session) -> None:
        """An online application needs the document photo, the selfie, the number and a code."""
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.holder_headers(),
            {"msisdn": world.holder.msisdn, "channel": "online_mail"},
            422,
            "EVIDENCE_REQUIRED",
        )
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.holder_headers(),
            {"msisdn": world.holder.msisdn, "channel": "esim", "document_number": factories.DOCUMENT},
            422,
            "EVIDENCE_REQUIRED",
        )

    def test_unknown_channel_and_extra_fields_are_refused(self, world: World, db: Session) -> None:
        """Schema violations are VALIDATION_FAILED."""
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.holder_headers(),
            {"msisdn": world.holder.msisdn, "channel": "pigeon"},
            422,
            "VALIDATION_FAILED",
        )
        _refused(
            world.client,
            db,
            "/api/v1/replacements",
            world.holder_headers(),
            {"msisdn": world.holder.msisdn, "channel": "esim", "state": "activated"},
            422,
            "VALIDATION_FAILED",
        )


class TestTransitionsOutOfOrder:
    """Steps run only in their turn, by their actors."""

    def test_activation_before_payment_is_refused(self, world: World, db: Session) -> None:
        """Activating an order that awaits payment is TRANSITION_NOT_ALLOWED and changes nothing."""
        r = world.client.post(
            "/api/v1/replacements",
            headers=world.clerk,
            json={
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        ref = r.json()["reference"]
        _refused(
            world.client,
            db,
            f"/api/v1/replacements/{ref}/activation",
            world.clerk,
            {},
            409,
            "TRANSITION_NOT_ALLOWED",
        )

    def test_paying_twice_is_refused(self, world: World, db: Session) -> None:
        """A second payment is refused; one charge is recorded."""
        r = world.client.post(
            "/api/v1/replacements",
            headers=world.clerk,
            json={
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        ref = r.json()["reference"]
        world.client.post(f"/api/v1/replacements/{ref}/payment", json={"method": "cash"}, headers=world.clerk)
        _refused(
            world.client,
            db,
            f"/api/v1/replacements/{ref}/payment",
            world.clerk,
            {"method": "cash"},
            409,
            "TRANSITION_NOT_ALLOWED",
        )
        assert db.query(Payment).count() == 1

    def test_shipping_a_store_order_is_refused(self, world: World, db: Session) -> None:
        """Store orders are never shipped."""
        r = world.client.post(
            "/api/v1/replacements",
            headers=world.clerk,
            json={
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        ref = r.json()["reference"]
        world.client.post(f"/api/v1/replacements/{ref}/payment", json={"method": "cash"}, headers=world.clerk)
        world.client.post(
            f"/api/v1/replacements/{ref}/sim", json={"iccid": world.store_sims[0].iccid}, headers=world.clerk
        )
        _refused(
            world.client,
            db,
            f"/api/v1/replacements/{ref}/shipment",
            world.admin,
            {"tracking_number": "SF123456"},
            409,
            "TRANSITION_NOT_ALLOWED",
        )

    def test_holder_cannot_decide_own_review(self, world: World, db: Session) -> None:
        """Only reviewers decide; a holder gets a 401 on the staff route and nothing changes."""
        ref = _submit_online(world, world.holder_headers())["reference"]
        _refused(
            world.client,
            db,
            f"/api/v1/replacements/{ref}/decision",
            world.holder_headers(),
            {"approve": True, "reason": "me"},
            401,
            "STAFF_SIGN_IN_REQUIRED",
        )

    def test_clerk_cannot_decide_review(self, world: World, db: Session) -> None:
        """A clerk's role does not include review decisions."""
        ref = _submit_online(world, world.holder_headers())["reference"]
        _refused(
            world.client,
            db,
            f"/api/v1/replacements/{ref}/decision",
            world.clerk,
            {"approve": True, "reason": "me"},
            403,
            "ROLE_NOT_ALLOWED",
        )

    def test_holder_cannot_pay_cash(self, world: World, db: Session) -> None:
        """Cash is recorded by a clerk only."""
        holder = world.holder_headers()
        ref = _submit_online(world, holder)["reference"]
        world.client.post(
            f"/api/v1/replacements/{ref}/decision",
            json={"approve": True, "reason": "ok"},
            headers=world.reviewer,
        )
        _refused(
            world.client,
            db,
            f"/api/v1/replacements/{ref}/payment",
            holder,
            {"method": "cash"},
            403,
            "PAYMENT_INVALID",
        )

    def test_payment_reference_cannot_be_reused(self, world: World, db: Session, settings: object) -> None:
        """One online payment pays one order."""
        holder = world.holder_headers()
        ref = _submit_online(world, holder)["reference"]
        world.client.post(
            f"/api/v1/replacements/{ref}/decision",
            json={"approve": True, "reason": "ok"},
            headers=world.reviewer,
        )
        world.client.post(
            f"/api/v1/replacements/{ref}/payment",
            json={"method": "online", "payment_reference": "PAY-SAME"},
            headers=holder,
        )
        other = factories.holder(db, world.client.app.state.settings)
        r = world.client.post(
            "/api/v1/replacements",
            headers=world.clerk,
            json={
                "msisdn": other.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        ref2 = r.json()["reference"]
        _refused(
            world.client,
            db,
            f"/api/v1/replacements/{ref2}/payment",
            world.clerk,
            {"method": "online", "payment_reference": "PAY-SAME"},
            422,
            "PAYMENT_REFERENCE_USED",
        )

    def test_other_holder_cannot_see_order(self, world: World, db: Session) -> None:
        """An order is invisible to other holders (not found, not forbidden)."""
        ref = _submit_online(world, world.holder_headers())["reference"]
        other = factories.holder(db, world.client.app.state.settings)
        from tests.helpers import line_headers

        r = world.client.get(f"/api/v1/replacements/{ref}", headers=line_headers(world.client, other.msisdn))
        assert r.status_code == 404
        assert r.json()["code"] == "ORDER_NOT_FOUND"


class TestCancelAndExpire:
    """Closing orders that will not be activated."""

    def test_cancel_after_payment_refunds_and_returns_sim(self, world: World, db: Session) -> None:
        """Cancelled before the SIM left stock: the SIM is back in stock and a refund is recorded."""
        r = world.client.post(
            "/api/v1/replacements",
            headers=world.clerk,
            json={
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        ref = r.json()["reference"]
        world.client.post(f"/api/v1/replacements/{ref}/payment", json={"method": "cash"}, headers=world.clerk)
        world.client.post(
            f"/api/v1/replacements/{ref}/sim", json={"iccid": world.store_sims[0].iccid}, headers=world.clerk
        )
        r = world.client.post(
            f"/api/v1/replacements/{ref}/cancellation", json={"reason": "found old SIM"}, headers=world.clerk
        )
        assert r.json()["state"] == "cancelled"
        db.expire_all()
        assert world.store_sims[0].status == SimStatus.IN_STOCK
        refund = db.query(Payment).filter_by(kind="refund").one()
        assert (refund.amount_minor, refund.currency) == (1000, "CNY")

    def test_cancel_after_shipping_retires_sim_without_refund(self, world: World, db: Session) -> None:
        """A SIM already in the post is retired; no refund is owed."""
        holder = world.holder_headers()
        ref = _submit_online(world, holder)["reference"]
        world.client.post(
            f"/api/v1/replacements/{ref}/decision",
            json={"approve": True, "reason": "ok"},
            headers=world.reviewer,
        )
        world.client.post(
            f"/api/v1/replacements/{ref}/payment",
            json={"method": "online", "payment_reference": "PAY-77"},
            headers=holder,
        )
        world.client.post(
            f"/api/v1/replacements/{ref}/shipment", json={"tracking_number": "SF9999"}, headers=world.admin
        )
        r = world.client.post(
            f"/api/v1/replacements/{ref}/cancellation", json={"reason": "x"}, headers=holder
        )
        assert r.json()["state"] == "cancelled"
        db.expire_all()
        assert world.warehouse_sims[0].status == SimStatus.RETIRED
        assert db.query(Payment).filter_by(kind="refund").count() == 0

    def test_cancelling_a_closed_order_is_refused(self, world: World, db: Session) -> None:
        """A cancelled order cannot be cancelled again."""
        holder = world.holder_headers()
        ref = _submit_online(world, holder)["reference"]
        world.client.post(f"/api/v1/replacements/{ref}/cancellation", json={"reason": "x"}, headers=holder)
        _refused(
            world.client,
            db,
            f"/api/v1/replacements/{ref}/cancellation",
            holder,
            {"reason": "again"},
            409,
            "TRANSITION_NOT_ALLOWED",
        )

    @pytest.mark.parametrize("shipped", [False, True])
    def test_expiry_releases_sim(self, world: World, db: Session, shipped: bool) -> None:
        """An order not activated within 30 days expires; its SIM returns to stock, or is retired if sent."""
        holder = world.holder_headers()
        ref = _submit_online(world, holder)["reference"]
        world.client.post(
            f"/api/v1/replacements/{ref}/decision",
            json={"approve": True, "reason": "ok"},
            headers=world.reviewer,
        )
        world.client.post(
            f"/api/v1/replacements/{ref}/payment",
            json={"method": "online", "payment_reference": f"PAY-X{shipped}"},
            headers=holder,
        )
        if shipped:
            world.client.post(
                f"/api/v1/replacements/{ref}/shipment",
                json={"tracking_number": "SF000001"},
                headers=world.admin,
            )
        order = db.query(ReplacementOrder).filter_by(reference=ref).one()
        order.expires_at = utcnow() - timedelta(seconds=1)
        db.flush()
        r = world.client.post("/api/v1/replacements:expire", headers=world.admin)
        assert r.json() == {"expired": [ref]}
        db.expire_all()
        assert order.state == "expired"
        assert world.warehouse_sims[0].status == (SimStatus.RETIRED if shipped else SimStatus.IN_STOCK)
        assert world.client.post("/api/v1/replacements:expire", headers=world.admin).json() == {"expired": []}
