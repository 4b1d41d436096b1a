"""Guessing the receipt proof: the last six digits of the new SIM's ICCID.

An attacker who has the holder's session (a phished service password) but not the parcel tries to activate
the mailed SIM by guessing the digits printed on it. tests/replacements/test_flows.py shows one wrong guess
is refused; here the attacker keeps guessing: every guess is a recorded, audited failed proof, and after the
fifth the line's self-service is locked, so that even the right digits are refused and the holder is alerted.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import AuditEntry, Notification, ProofAttempt, ReplacementOrder, Sim
from tests.replacements.conftest import World
from tests.security.conftest import approved_order, assert_line_untouched, last_audit_id, rows


def shipped_order(world: World, db: Session, settings: Settings, holder: dict[str, str]) -> tuple[str, str]:
    """The holder's online order, paid and shipped; its reference and the new SIM's last six digits."""
    reference = approved_order(db, settings, world.holder)
    world.client.post(
        f"/api/v1/replacements/{reference}/payment",
        json={"method": "online", "payment_reference": f"PAY-{reference}"},
        headers=holder,
    )
    shipped = world.client.post(f"/api/v1/replacements/{reference}/shipment", json={}, headers=world.admin)
    assert shipped.json()["state"] == "shipped", shipped.text
    db.expire_all()
    order = db.scalars(select(ReplacementOrder).where(ReplacementOrder.reference == reference)).one()
    sim = db.get(Sim, order.new_sim_id)
    assert sim is not None
    return reference, sim.iccid[-6:]


class TestIccidDigitGuessing:
    """Repeated guesses of the new SIM's ICCID digits."""

    def test_guessing_locks_activation_before_the_right_digits(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """Five wrong guesses are each PROOF_FAILED, recorded and audited; the sixth try, with the right
        digits, is SELF_SERVICE_LOCKED; the number stays on the old SIM and the order stays shipped."""
        holder = world.holder_headers()
        reference, right = shipped_order(world, db, settings, holder)
        guesses = [f"{(int(right) + n) % 1_000_000:06d}" for n in range(1, 6)]
        since = last_audit_id(db)
        before = rows(db, "proof_attempts", "audit_log", "notifications")
        path = f"/api/v1/replacements/{reference}/activation"
        for guess in guesses:
            r = world.client.post(path, json={"iccid_last_digits": guess}, headers=holder)
            assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED"), guess
        r = world.client.post(path, json={"iccid_last_digits": right}, headers=holder)
        assert (r.status_code, r.json()["code"]) == (423, "SELF_SERVICE_LOCKED")
        assert rows(db, "proof_attempts", "audit_log", "notifications") == before
        assert_line_untouched(db, world.holder)
        db.expire_all()
        failed = db.scalars(
            select(ProofAttempt.method).where(
                ProofAttempt.line_id == world.holder.line.id, ProofAttempt.passed.is_(False)
            )
        ).all()
        assert failed == ["iccid_digits"] * 5
        audited = db.scalars(
            select(AuditEntry.action).where(AuditEntry.id > since, AuditEntry.action == "proof.failed")
        ).all()
        assert len(audited) == 5
        state = world.client.get(f"/api/v1/replacements/{reference}", headers=holder).json()["state"]
        assert state == "shipped"

    def test_guessing_alerts_the_holder(self, world: World, db: Session, settings: Settings) -> None:
        """When the guesses lock self-service, the holder is told through the registered contacts (the
        ``failed_proofs`` alert), as for every other kind of failed proof (DOMAIN.md section 5)."""
        holder = world.holder_headers()
        reference, right = shipped_order(world, db, settings, holder)
        for n in range(1, 6):
            world.client.post(
                f"/api/v1/replacements/{reference}/activation",
                json={"iccid_last_digits": f"{(int(right) + n) % 1_000_000:06d}"},
                headers=holder,
            )
        db.expire_all()
        alerts = db.scalars(
            select(Notification.template).where(Notification.subscriber_id == world.holder.subscriber.id)
        ).all()
        assert "failed_proofs" in alerts
