"""Staff acting outside their store or their role.

A clerk serves the holders who stand at their own store's counter, with that store's stock; reviewers
decide online applications; admins ship, set fees and run the back office. An insider (or a stolen staff
session) stepping outside that scope must be refused, with nothing changed.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import AuditEntry, ReplacementOrder, Sim, StaffRole
from tests import factories
from tests.helpers import staff_headers
from tests.replacements.conftest import World
from tests.security.conftest import assert_line_untouched, bearer_of, browser, rows, store_order

ADMIN_ONLY: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PUT", "/api/v1/fees/online_mail", {"amount_minor": 0, "currency": "CNY"}),
    ("POST", "/api/v1/replacements/{reference}/shipment", {}),
    ("POST", "/api/v1/replacements/{reference}/reshipment", {}),
    ("POST", "/api/v1/replacements/{reference}/delivery", None),
    ("POST", "/api/v1/replacements:expire", None),
    ("POST", "/api/v1/jobs:retry", {}),
    ("GET", "/api/v1/jobs", None),
    ("POST", "/api/v1/lines/{msisdn}/recycling:undo", None),
]


@pytest.fixture
def other_clerk(world: World, db: Session) -> dict[str, str]:
    """A clerk of another store, signed in through the API."""
    elsewhere = factories.store(db)
    factories.sim(db, store=elsewhere)
    clerk = factories.staff(db, StaffRole.CLERK, store_row=elsewhere)
    return staff_headers(world.client, clerk.username)


class TestClerkOfAnotherStore:
    """A clerk reaching for an order taken at another store."""

    @pytest.mark.parametrize(
        ("method", "suffix", "body"),
        [
            ("GET", "", None),
            ("GET", "/timeline", None),
            ("POST", "/activation", {}),
            ("POST", "/cancellation", {"reason": "customer left"}),
        ],
    )
    def test_store_order_is_not_found_elsewhere(
        self,
        world: World,
        db: Session,
        other_clerk: dict[str, str],
        method: str,
        suffix: str,
        body: dict[str, Any] | None,
    ) -> None:
        """Reading, activating or cancelling another store's order at the counter (the SIM already in the
        holder's hand): ORDER_NOT_FOUND, the number stays on its SIM, nothing changes."""
        reference = store_order(world, assigned=True)
        before = rows(db)
        r = world.client.request(
            method, f"/api/v1/replacements/{reference}{suffix}", json=body, headers=other_clerk
        )
        assert (r.status_code, r.json()["code"]) == (404, "ORDER_NOT_FOUND")
        assert rows(db) == before
        assert_line_untouched(db, world.holder)

    def test_payment_and_sim_of_another_store_are_refused(
        self, world: World, db: Session, other_clerk: dict[str, str]
    ) -> None:
        """Taking the fee for, waiving it on, or handing a SIM to another store's order: ORDER_NOT_FOUND
        each time; the order still awaits payment and the SIM stays in stock."""
        reference = store_order(world, assigned=False)
        before = rows(db)
        for suffix, body in (
            ("/payment", {"method": "cash"}),
            ("/fee-waiver", {"reason": "friend of mine"}),
            ("/sim", {"iccid": world.store_sims[1].iccid}),
        ):
            r = world.client.post(f"/api/v1/replacements/{reference}{suffix}", json=body, headers=other_clerk)
            assert (r.status_code, r.json()["code"]) == (404, "ORDER_NOT_FOUND"), suffix
        assert rows(db) == before

    @pytest.mark.parametrize("step", ["payment", "sim", "activation"])
    def test_counter_forms_of_another_store_are_refused(
        self, world: World, db: Session, settings: Settings, other_clerk: dict[str, str], step: str
    ) -> None:
        """The console's counter forms (cash, SIM, activation) posted by another store's clerk with a valid
        CSRF token are refused with the not-found page; nothing changes."""
        reference = store_order(world, assigned=step == "activation")
        token = browser(world.client, settings, session_token=bearer_of(other_clerk))
        before = rows(db)
        page = world.client.get(f"/console/counter/orders/{reference}")
        assert page.status_code == 404
        r = world.client.post(
            f"/console/counter/orders/{reference}/{step}",
            data={"csrf": token, "iccid": world.store_sims[1].iccid},
            follow_redirects=False,
        )
        assert r.status_code == 404, r.text[:300]
        assert rows(db) == before
        assert_line_untouched(db, world.holder)


class TestStaffOutsideTheirRole:
    """Staff doing what their role does not cover."""

    def test_clerk_cannot_activate_an_online_order(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """A clerk (who can see online orders) tries to activate a holder's mailed SIM with the right
        ICCID digits, without the holder's own proof: ASSURANCE_TOO_LOW; the line keeps its SIM."""
        from tests.security.conftest import approved_order

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
        assert shipped.json()["state"] == "shipped", shipped.text
        db.expire_all()
        order = db.scalars(select(ReplacementOrder).where(ReplacementOrder.reference == reference)).one()
        sim = db.get(Sim, order.new_sim_id)
        assert sim is not None
        before = rows(db, "proof_attempts", "audit_log")
        r = world.client.post(
            f"/api/v1/replacements/{reference}/activation",
            json={"iccid_last_digits": sim.iccid[-6:]},
            headers=world.clerk,
        )
        assert (r.status_code, r.json()["code"]) == (403, "ASSURANCE_TOO_LOW")
        assert rows(db, "proof_attempts", "audit_log") == before
        assert_line_untouched(db, world.holder)

    @pytest.mark.parametrize(("method", "template", "body"), ADMIN_ONLY)
    def test_admin_work_is_refused_to_clerks_and_reviewers(
        self,
        world: World,
        db: Session,
        settings: Settings,
        method: str,
        template: str,
        body: dict[str, Any] | None,
    ) -> None:
        """Setting a fee, shipping or marking a parcel delivered, expiring orders, retrying jobs, reading
        the job queue and undoing a recycling are admin work: ROLE_NOT_ALLOWED for a clerk and a reviewer,
        and nothing changes."""
        from tests.security.conftest import approved_order

        reference = approved_order(db, settings, world.holder)
        path = template.format(reference=reference, msisdn=world.holder.msisdn)
        before = rows(db)
        for staff in (world.clerk, world.reviewer):
            r = world.client.request(method, path, json=body, headers=staff)
            assert (r.status_code, r.json()["code"]) == (403, "ROLE_NOT_ALLOWED"), r.text
        assert rows(db) == before

    def test_reviewer_cannot_work_the_counter(self, world: World, db: Session) -> None:
        """A reviewer opening a store order with a document number, or taking cash for one:
        refused; nothing changes."""
        reference = store_order(world, assigned=False)
        before = rows(db, "proof_attempts", "audit_log")
        opened = world.client.post(
            "/api/v1/replacements",
            headers=world.reviewer,
            json={
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        assert (opened.status_code, opened.json()["code"]) == (403, "ACTOR_NOT_ALLOWED"), opened.text
        cash = world.client.post(
            f"/api/v1/replacements/{reference}/payment", json={"method": "cash"}, headers=world.reviewer
        )
        assert (cash.status_code, cash.json()["code"]) == (403, "PAYMENT_INVALID"), cash.text
        assert rows(db, "proof_attempts", "audit_log") == before

    def test_clerk_cannot_open_identity_photos(self, world: World, db: Session) -> None:
        """The holder's document photo opens for reviewers only: a clerk gets 403 and no
        ``evidence.viewed`` entry is written."""
        upload = world.client.post(
            "/api/v1/evidence",
            headers=world.holder_headers(),
            data={"kind": "document_photo"},
            files={"file": ("card.jpg", _jpeg(), "image/jpeg")},
        )
        reference = upload.json()["reference"]
        before = rows(db)
        r = world.client.get(f"/api/v1/evidence/{reference}/content", headers=world.clerk)
        assert r.status_code == 403
        assert rows(db) == before

    def test_clerk_cannot_reveal_a_review(self, world: World, db: Session, settings: Settings) -> None:
        """Revealing the name and number behind an online order under review is a reviewer's (audited) act:
        a clerk's post is refused and no ``personal_data.revealed`` entry is written."""
        from tests.security.conftest import approved_order

        reference = approved_order(db, settings, world.holder)
        token = browser(world.client, settings, session_token=bearer_of(world.clerk))
        before = rows(db)
        r = world.client.post(f"/console/reviews/{reference}/reveal", data={"csrf": token})
        assert r.status_code == 403
        assert world.holder.subscriber.real_name not in r.text
        assert rows(db) == before

    @pytest.mark.parametrize("path", ["/console/stock/transfer", "/console/stock/import"])
    def test_clerk_cannot_move_or_import_stock(
        self, world: World, db: Session, settings: Settings, path: str
    ) -> None:
        """Moving blank SIMs between stores or importing a batch is admin work: a clerk's post is refused
        and the stock is as it was."""
        token = browser(world.client, settings, session_token=bearer_of(world.clerk))
        before = rows(db)
        r = world.client.post(
            path,
            data={
                "csrf": token,
                "store": world.store.code,
                "count": "3",
                "iccids": world.warehouse_sims[0].iccid,
            },
        )
        assert r.status_code == 403
        assert rows(db) == before

    def test_password_reset_at_the_counter_needs_the_holders_document(
        self, world: World, db: Session
    ) -> None:
        """A clerk setting a new service password must type the holder's document number from the original:
        with another number it is refused, the old password still works, and the failure is recorded and
        audited against the line."""
        since = int(db.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1)) or 0)
        before = rows(db, "proof_attempts", "audit_log")
        r = world.client.post(
            f"/api/v1/lines/{world.holder.msisdn}/service-password",
            json={"in_person_document_number": "44030419900101002X", "new_password": "n3w-Pa55word"},
            headers=world.clerk,
        )
        assert (r.status_code, r.json()["code"]) == (403, "PROOF_FAILED")
        assert rows(db, "proof_attempts", "audit_log") == before
        db.expire_all()
        failed = db.scalars(
            select(AuditEntry).where(AuditEntry.id > since, AuditEntry.action == "proof.failed")
        ).one()
        assert failed.data["methods"] == ["in_person_document"]
        assert world.holder_headers()  # the holder's own password still signs in


def _jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 130, 140)).save(out, format="JPEG")
    return out.getvalue()
