"""The SIM-change lock at the last step, and the online cool-down against channel switching.

tests/lines/test_protection.py shows that the lock refuses a new order; here the holder turns the lock on
while an order is already under way (the attacker's order, or a stolen parcel): the lock must still stop the
last step, the activation, at the counter and online, with the refusal audited and the holder alerted.
tests/replacements/test_guards.py shows the cool-down spans the two online channels; here the attacker
cancels the slow mail order and switches to the instant eSIM channel, through the API and the portal.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import AuditEntry, Notification, ReplacementOrder, Sim
from tests import factories
from tests.replacements.conftest import World
from tests.security.conftest import (
    APPROVED_STATES,
    approved_order,
    assert_line_untouched,
    bearer_of,
    browser,
    last_audit_id,
    rows,
    store_order,
)

#: What the counter page tells the clerk when the lock refuses (simkeep.web.console.common).
LOCK_MESSAGE_ZH = "机主开启了换卡锁"


def lock_on(world: World) -> None:
    """The holder turns the SIM-change lock on (a session is enough to make the line safer)."""
    r = world.client.put(
        f"/api/v1/lines/{world.holder.msisdn}/sim-change-lock",
        json={"on": True},
        headers=world.holder_headers(),
    )
    assert r.status_code == 200, r.text


def assert_refused_and_alerted(db: Session, world: World, since: int) -> None:
    """The refusal is on the audit trail and the holder was alerted."""
    db.expire_all()
    actions = list(db.scalars(select(AuditEntry.action).where(AuditEntry.id > since)))
    assert "replacement.refused_locked" in actions
    alerts = db.scalars(
        select(Notification.template).where(Notification.subscriber_id == world.holder.subscriber.id)
    ).all()
    assert "sim_change_blocked" in alerts


class TestLockAtActivation:
    """The lock turned on after an order was opened."""

    def test_counter_activation_is_refused(self, world: World, db: Session) -> None:
        """A store order has its SIM; before the clerk activates, the holder turns the lock on: the
        activation is SIM_CHANGE_LOCKED, the number stays on the old SIM, the attempt is audited and the
        holder alerted."""
        reference = store_order(world, assigned=True)
        lock_on(world)
        since = last_audit_id(db)
        before = rows(db, "audit_log", "notifications")
        r = world.client.post(f"/api/v1/replacements/{reference}/activation", json={}, headers=world.clerk)
        assert (r.status_code, r.json()["code"]) == (423, "SIM_CHANGE_LOCKED")
        assert rows(db, "audit_log", "notifications") == before
        assert_line_untouched(db, world.holder)
        assert_refused_and_alerted(db, world, since)

    def test_online_activation_with_the_right_digits_is_refused(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """A mailed SIM is on its way; the holder, worried, turns the lock on. Whoever then activates with
        the holder's session and the right ICCID digits is refused: SIM_CHANGE_LOCKED, audited, alerted."""
        reference = approved_order(db, settings, world.holder)
        holder = world.holder_headers()
        world.client.post(
            f"/api/v1/replacements/{reference}/payment",
            json={"method": "online", "payment_reference": f"PAY-{reference}"},
            headers=holder,
        )
        shipped = world.client.post(
            f"/api/v1/replacements/{reference}/shipment", json={}, headers=world.admin
        )
        assert shipped.json()["state"] == "shipped"
        lock_on(world)
        db.expire_all()
        order = db.scalars(select(ReplacementOrder).where(ReplacementOrder.reference == reference)).one()
        sim = db.get(Sim, order.new_sim_id)
        assert sim is not None
        since = last_audit_id(db)
        before = rows(db, "audit_log", "notifications", "proof_attempts")
        r = world.client.post(
            f"/api/v1/replacements/{reference}/activation",
            json={"iccid_last_digits": sim.iccid[-6:]},
            headers=holder,
        )
        assert (r.status_code, r.json()["code"]) == (423, "SIM_CHANGE_LOCKED")
        assert rows(db, "audit_log", "notifications", "proof_attempts") == before
        assert_line_untouched(db, world.holder)
        assert_refused_and_alerted(db, world, since)

    def test_counter_page_activation_is_refused(self, world: World, db: Session, settings: Settings) -> None:
        """The same at the console's counter form: the lock wins over the clerk's activation button."""
        reference = store_order(world, assigned=True)
        lock_on(world)
        token = browser(world.client, settings, session_token=bearer_of(world.clerk))
        since = last_audit_id(db)
        before = rows(db, "audit_log", "notifications")
        r = world.client.post(
            f"/console/counter/orders/{reference}/activation", data={"csrf": token}, follow_redirects=False
        )
        assert r.status_code == 422
        assert LOCK_MESSAGE_ZH in r.text
        assert rows(db, "audit_log", "notifications") == before
        assert_line_untouched(db, world.holder)
        assert_refused_and_alerted(db, world, since)


class TestCooldownChannelSwitch:
    """Cancel the mail order, then try the instant eSIM channel within the 30 days."""

    def test_cancel_then_esim_through_the_api_is_refused(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """The attacker's mail order is approved; they cancel it (no parcel to wait for) and apply for an
        eSIM at once: COOLDOWN_ACTIVE, no second order, nothing else changes."""
        reference = approved_order(db, settings, world.holder)
        holder = world.holder_headers()
        cancelled = world.client.post(
            f"/api/v1/replacements/{reference}/cancellation", json={"reason": "too slow"}, headers=holder
        )
        assert cancelled.json()["state"] == "cancelled"
        body = {
            "msisdn": world.holder.msisdn,
            "channel": "esim",
            "document_number": factories.DOCUMENT,
            "document_photo": "EV-ANY",
            "selfie": "EV-ANY",
            "one_time_code": "123456",
        }
        before = rows(db)
        r = world.client.post("/api/v1/replacements", json=body, headers=holder)
        assert (r.status_code, r.json()["code"]) == (409, "COOLDOWN_ACTIVE")
        assert rows(db) == before
        db.expire_all()
        states = set(
            db.scalars(select(ReplacementOrder.state).where(ReplacementOrder.line_id == world.holder.line.id))
        )
        assert states == {"cancelled"}
        assert not states & APPROVED_STATES
        assert_line_untouched(db, world.holder)

    def test_cancel_then_portal_wizard_is_closed(self, world: World, db: Session, settings: Settings) -> None:
        """On the portal the wizard says no before anything is uploaded: after the cancelled order it
        shows the cool-down (come to a store, or wait) and offers no online channel."""
        reference = approved_order(db, settings, world.holder)
        holder = world.holder_headers()
        world.client.post(
            f"/api/v1/replacements/{reference}/cancellation", json={"reason": "too slow"}, headers=holder
        )
        browser(world.client, settings, session_token=bearer_of(holder))
        world.client.cookies.set("sk_lang", "en")
        before = rows(db)
        page = world.client.get("/portal/apply")
        assert page.status_code == 200
        assert "One online replacement per 30 days" in page.text
        esim = world.client.get("/portal/apply/photos", params={"channel": "esim"}, follow_redirects=False)
        assert (esim.status_code, esim.headers["location"]) == (303, "/portal/apply")
        assert rows(db) == before
        assert_line_untouched(db, world.holder)
