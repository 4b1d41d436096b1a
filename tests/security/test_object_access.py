"""Object-level access: a signed-in holder going after another holder's line, orders and photos.

The attacker is a real holder with a valid session (the world's holder); the victim is a second holder
with a shipped replacement order. Every endpoint that takes a number or an order reference must answer the
attacker exactly as it answers for a number or reference that does not exist (so it does not even confirm
that the victim's exist), and change nothing at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import EvidenceFile, ReplacementOrder, Sim
from tests import factories
from tests.helpers import line_headers
from tests.replacements.conftest import World
from tests.security.conftest import (
    UNKNOWN_MSISDN,
    assert_line_untouched,
    bearer_of,
    browser,
    rows,
)

LINE_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/lines/{msisdn}", None),
    ("GET", "/api/v1/lines/{msisdn}/sim-changes", None),
    ("PUT", "/api/v1/lines/{msisdn}/sim-change-lock", {"on": True}),
    ("PUT", "/api/v1/lines/{msisdn}/sim-change-lock", {"on": False, "one_time_code": "123456"}),
    (
        "PUT",
        "/api/v1/lines/{msisdn}/contacts",
        {"contact_email": "attacker@example.org", "one_time_code": "123456"},
    ),
    ("POST", "/api/v1/lines/{msisdn}/reinstatement", {"service_password": factories.PASSWORD}),
]
ORDER_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/replacements/{reference}", None),
    ("GET", "/api/v1/replacements/{reference}/timeline", None),
    ("GET", "/api/v1/replacements/{reference}/parcels", None),
    ("POST", "/api/v1/replacements/{reference}/payment", {"method": "online", "payment_reference": "PAY-X1"}),
    ("POST", "/api/v1/replacements/{reference}/cancellation", {"reason": "changed my mind"}),
]
STAFF_ORDER_ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/replacements/{reference}/review", None),
    ("POST", "/api/v1/replacements/{reference}/decision", {"approve": True, "reason": "looks fine"}),
    ("POST", "/api/v1/replacements/{reference}/fee-waiver", {"reason": "goodwill"}),
    ("POST", "/api/v1/replacements/{reference}/sim", {}),
    ("POST", "/api/v1/replacements/{reference}/shipment", {}),
    ("POST", "/api/v1/replacements/{reference}/reshipment", {}),
    ("POST", "/api/v1/replacements/{reference}/delivery", None),
]
UNKNOWN_REFERENCE = "R-NOPE0000"


def _call(world: World, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Any:
    return world.client.request(method, path, json=body, headers=headers)


def _answer(response: Any) -> tuple[int, object]:
    """What an attacker learns: the status and the error code (or the body)."""
    data = response.json()
    return response.status_code, data.get("code", data) if isinstance(data, dict) else data


def _new_sim_digits(db: Session, reference: str) -> str:
    db.expire_all()
    order = db.scalars(select(ReplacementOrder).where(ReplacementOrder.reference == reference)).one()
    sim = db.get(Sim, order.new_sim_id)
    assert sim is not None
    return sim.iccid[-6:]


class TestAnotherHoldersLine:
    """A holder naming another holder's number in the URL."""

    @pytest.mark.parametrize(("method", "template", "body"), LINE_ENDPOINTS)
    def test_other_line_answers_like_an_unknown_number(
        self,
        world: World,
        db: Session,
        victim: factories.Holder,
        method: str,
        template: str,
        body: dict[str, Any] | None,
    ) -> None:
        """Reading, locking, unlocking, re-pointing the contacts of or reinstating the victim's line: 404
        LINE_NOT_FOUND, the very answer an unknown number gets; no row anywhere changes."""
        attacker = world.holder_headers()
        before = rows(db)
        theirs = _call(world, method, template.format(msisdn=victim.msisdn), body, attacker)
        nobody = _call(world, method, template.format(msisdn=UNKNOWN_MSISDN), body, attacker)
        assert _answer(theirs) == _answer(nobody) == (404, "LINE_NOT_FOUND")
        assert theirs.text.replace(victim.msisdn, "N") == nobody.text.replace(UNKNOWN_MSISDN, "N")
        assert rows(db) == before
        assert_line_untouched(db, victim)

    def test_suspended_line_cannot_be_reinstated_by_another_holder(
        self, world: World, db: Session, victim: factories.Holder
    ) -> None:
        """The victim reported the SIM stolen; the attacker, signed in to their own line and knowing the
        victim's service password, cannot lift the suspension: LINE_NOT_FOUND, the line stays suspended."""
        reported = world.client.post(
            "/api/v1/loss-reports", json={"msisdn": victim.msisdn, "real_name": "李娜", "reason": "stolen"}
        )
        assert reported.status_code == 201
        attacker = world.holder_headers()
        before = rows(db)
        r = world.client.post(
            f"/api/v1/lines/{victim.msisdn}/reinstatement",
            json={"service_password": factories.PASSWORD},
            headers=attacker,
        )
        assert (r.status_code, r.json()["code"]) == (404, "LINE_NOT_FOUND")
        assert rows(db) == before
        db.expire_all()
        assert str(victim.line.status) == "suspended"

    def test_holder_cannot_read_any_audit_trail(
        self, world: World, db: Session, victim: factories.Holder
    ) -> None:
        """The audit trail (who proved what, when) is for staff: a holder's token is STAFF_SIGN_IN_REQUIRED
        for the victim's line and for their own alike."""
        attacker = world.holder_headers()
        for number in (victim.msisdn, world.holder.msisdn):
            r = world.client.get(f"/api/v1/lines/{number}/audit", headers=attacker)
            assert (r.status_code, r.json()["code"]) == (401, "STAFF_SIGN_IN_REQUIRED")

    def test_order_list_filtered_by_another_number_is_empty(
        self, world: World, db: Session, victim: factories.Holder, victim_order: str
    ) -> None:
        """Listing orders with ``?msisdn=`` of the victim shows the attacker nothing of the victim's."""
        r = world.client.get(
            "/api/v1/replacements", params={"msisdn": victim.msisdn}, headers=world.holder_headers()
        )
        assert (r.status_code, r.json()) == (200, [])
        assert victim_order not in r.text


class TestAnotherHoldersOrder:
    """A holder naming another holder's order reference."""

    @pytest.mark.parametrize(("method", "template", "body"), ORDER_ENDPOINTS)
    def test_other_order_answers_like_an_unknown_reference(
        self,
        world: World,
        db: Session,
        victim: factories.Holder,
        victim_order: str,
        method: str,
        template: str,
        body: dict[str, Any] | None,
    ) -> None:
        """Reading the victim's order, its timeline or parcels, paying or cancelling it: 404
        ORDER_NOT_FOUND as for a reference that does not exist; nothing changes."""
        attacker = world.holder_headers()
        before = rows(db)
        theirs = _call(world, method, template.format(reference=victim_order), body, attacker)
        nobody = _call(world, method, template.format(reference=UNKNOWN_REFERENCE), body, attacker)
        assert _answer(theirs) == _answer(nobody) == (404, "ORDER_NOT_FOUND")
        assert theirs.text.replace(victim_order, "R") == nobody.text.replace(UNKNOWN_REFERENCE, "R")
        assert rows(db) == before
        assert_line_untouched(db, victim)

    def test_intercepted_sim_cannot_be_activated_from_another_session(
        self, world: World, db: Session, victim: factories.Holder, victim_order: str
    ) -> None:
        """The attacker intercepted the victim's parcel and reads the right ICCID digits off the SIM, but
        can only sign in to their own line: activating the victim's order is ORDER_NOT_FOUND, the victim's
        number stays on the old SIM and the new SIM stays unused."""
        digits = _new_sim_digits(db, victim_order)
        attacker = world.holder_headers()
        before = rows(db)
        r = world.client.post(
            f"/api/v1/replacements/{victim_order}/activation",
            json={"iccid_last_digits": digits},
            headers=attacker,
        )
        assert (r.status_code, r.json()["code"]) == (404, "ORDER_NOT_FOUND")
        assert rows(db) == before
        assert_line_untouched(db, victim)

    @pytest.mark.parametrize(("method", "template", "body"), STAFF_ORDER_ENDPOINTS)
    def test_staff_steps_are_refused_to_holders(
        self,
        world: World,
        db: Session,
        victim: factories.Holder,
        victim_order: str,
        method: str,
        template: str,
        body: dict[str, Any] | None,
    ) -> None:
        """The review, decision, fee waiver, SIM assignment, shipping and delivery steps of an order are
        staff work: a holder's token is STAFF_SIGN_IN_REQUIRED on the victim's order, and nothing changes."""
        attacker = world.holder_headers()
        before = rows(db)
        r = _call(world, method, template.format(reference=victim_order), body, attacker)
        assert (r.status_code, r.json()["code"]) == (401, "STAFF_SIGN_IN_REQUIRED")
        assert rows(db) == before
        assert_line_untouched(db, victim)


class TestAnotherHoldersOrderPages:
    """The portal's order pages, with the attacker's session cookie."""

    @pytest.mark.parametrize("step", ["pay", "activate", "cancel"])
    def test_order_forms_of_another_holder_are_not_found(
        self,
        world: World,
        db: Session,
        settings: Settings,
        victim: factories.Holder,
        victim_order: str,
        step: str,
    ) -> None:
        """Posting the pay, activate (with the right ICCID digits) or cancel form of the victim's order,
        with a valid CSRF token: the not-found page, as for an unknown order; nothing changes."""
        digits = _new_sim_digits(db, victim_order)
        token = browser(world.client, settings, session_token=bearer_of(world.holder_headers()))
        form = {"csrf": token, "iccid_digits": digits, "payment_reference": "PAY-ATTACK", "reason": "x"}
        before = rows(db)
        theirs = world.client.post(f"/portal/orders/{victim_order}/{step}", data=form, follow_redirects=False)
        nobody = world.client.post(
            f"/portal/orders/{UNKNOWN_REFERENCE}/{step}", data=form, follow_redirects=False
        )
        assert theirs.status_code == nobody.status_code == 404
        assert victim.msisdn[-4:] not in theirs.text
        assert rows(db) == before
        assert_line_untouched(db, victim)

    @pytest.mark.parametrize("page", ["", "/esim.png", "/esim.svg"])
    def test_order_page_and_qr_of_another_holder_are_not_found(
        self,
        world: World,
        db: Session,
        settings: Settings,
        victim: factories.Holder,
        victim_order: str,
        page: str,
    ) -> None:
        """The victim's order page and its eSIM QR code (the activation secret) answer 404 to the
        attacker's session, as for an unknown reference."""
        browser(world.client, settings, session_token=bearer_of(world.holder_headers()))
        theirs = world.client.get(f"/portal/orders/{victim_order}{page}")
        nobody = world.client.get(f"/portal/orders/{UNKNOWN_REFERENCE}{page}")
        assert theirs.status_code == nobody.status_code == 404
        assert victim.msisdn[-4:] not in theirs.text


class TestEvidencePhotos:
    """The identity photos behind an order."""

    def test_holder_cannot_open_any_photo(
        self, world: World, db: Session, settings: Settings, victim: factories.Holder
    ) -> None:
        """Evidence images open for reviewers only: a holder asking for the victim's document photo gets
        STAFF_SIGN_IN_REQUIRED, for their own too, and no ``evidence.viewed`` entry is written."""
        victim_upload = world.client.post(
            "/api/v1/evidence",
            headers=line_headers(world.client, victim.msisdn),
            data={"kind": "document_photo"},
            files={"file": ("card.jpg", _jpeg(), "image/jpeg")},
        )
        assert victim_upload.status_code == 201, victim_upload.text
        reference = victim_upload.json()["reference"]
        attacker = world.holder_headers()
        before = rows(db)
        r = world.client.get(f"/api/v1/evidence/{reference}/content", headers=attacker)
        assert (r.status_code, r.json()["code"]) == (401, "STAFF_SIGN_IN_REQUIRED")
        assert rows(db) == before
        db.expire_all()
        row = db.scalars(select(EvidenceFile).where(EvidenceFile.reference == reference)).one()
        assert row.line_id == victim.line.id


def _jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (640, 480), (120, 130, 140)).save(out, format="JPEG")
    return out.getvalue()
