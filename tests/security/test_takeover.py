"""Account takeover first, SIM swap second: signs that send an otherwise clean application to a person.

A fraudster who has phished the service password and a one-time code re-points the registered e-mail to
themselves (so that the next codes and the change notices go to them), or has been guessing before getting
it right, and then hands in an application that passes every automatic check (the holder's real document
and face, bought or stolen). Such an application must not be approved automatically: the risk check sends it
to a reviewer, with the reason on record, and no SIM is assigned.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import IdentityCheck, ReplacementOrder
from tests import factories
from tests.helpers import line_headers
from tests.online import request_code
from tests.replacements.conftest import World
from tests.security.conftest import VICTIM_DOCUMENT, approved_orders, assert_line_untouched

#: A third valid resident ID number (region 110101, born 1980-01-01).
THIRD_DOCUMENT = "110101198001010037"


def risk_of(db: Session, reference: str) -> tuple[str, list[str]]:
    """The risk check's verdict and reasons for an order, after showing that every other automatic check
    passed (so that the risk is what kept the order from approval)."""
    db.expire_all()
    order = db.scalars(select(ReplacementOrder).where(ReplacementOrder.reference == reference)).one()
    checks = {c.kind: c for c in db.scalars(select(IdentityCheck).where(IdentityCheck.order_id == order.id))}
    assert {k: c.verdict for k, c in checks.items() if k != "risk"} == {
        "document": "pass",
        "ocr": "pass",
        "face": "pass",
    }
    return checks["risk"].verdict, list(checks["risk"].reasons or [])


class TestTakeoverThenSwap:
    """A clean application after signs of a takeover."""

    def test_new_contact_sends_a_clean_application_to_review(self, world: World, db: Session) -> None:
        """The e-mail was changed (with the holder's session and a code) just before a clean application
        with the holder's own photos: the application goes to review (``contact_changed_recently``) instead
        of being approved; no SIM is assigned and the number stays on its SIM."""
        holder = world.holder_headers()
        code = request_code(world.client, holder, world.outbox, purpose="contact.change")
        changed = world.client.put(
            f"/api/v1/lines/{world.holder.msisdn}/contacts",
            json={"contact_email": "fraudster@example.net", "one_time_code": code},
            headers=holder,
        )
        assert changed.status_code == 200, changed.text
        order = world.submit_online(holder, portrait="obama.jpg", selfie="obama2.jpg")
        assert (order["state"], order["new_sim_iccid"]) == ("in_review", None)
        assert risk_of(db, str(order["reference"])) == ("review", ["contact_changed_recently"])
        assert approved_orders(db, world.holder) == []
        assert_line_untouched(db, world.holder)

    def test_recent_failed_proof_sends_a_clean_application_to_review(self, world: World, db: Session) -> None:
        """A wrong one-time code shortly before (someone trying): the next, clean, application goes to
        review with ``recent_failed_proofs``; nothing is approved."""
        holder = world.holder_headers()
        code = request_code(world.client, holder, world.outbox, purpose="contact.change")
        wrong = world.client.put(
            f"/api/v1/lines/{world.holder.msisdn}/contacts",
            json={
                "contact_email": "fraudster@example.net",
                "one_time_code": f"{(int(code) + 1) % 10**6:06d}",
            },
            headers=holder,
        )
        assert (wrong.status_code, wrong.json()["code"]) == (403, "PROOF_FAILED")
        order = world.submit_online(holder, portrait="obama.jpg", selfie="obama2.jpg")
        assert (order["state"], order["new_sim_iccid"]) == ("in_review", None)
        verdict, reasons = risk_of(db, str(order["reference"]))
        assert (verdict, "recent_failed_proofs" in reasons) == ("review", True)
        assert approved_orders(db, world.holder) == []
        assert_line_untouched(db, world.holder)

    def test_third_application_to_one_address_goes_to_review(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """A drop address: clean applications of three different holders within 30 days all name the same
        delivery address; the third goes to review (``many_applications_from_address``), not to the post."""
        drop = {
            "recipient": "王先生",
            "phone": "+8613912345678",
            "region": "Beijing",
            "city": "Beijing",
            "street": "1 Drop Lane",
        }
        others = [
            factories.holder(db, settings, name="李娜", document=VICTIM_DOCUMENT),
            factories.holder(db, settings, name="王芳", document=THIRD_DOCUMENT),
        ]
        outcomes = []
        for holder, document in (
            (others[0], VICTIM_DOCUMENT),
            (others[1], THIRD_DOCUMENT),
            (world.holder, factories.DOCUMENT),
        ):
            headers = line_headers(world.client, holder.msisdn)
            fields = world.application(
                headers, portrait="obama.jpg", selfie="obama2.jpg", document_number=document
            )
            body = {"msisdn": holder.msisdn, "channel": "online_mail", "delivery_address": drop, **fields}
            r = world.client.post("/api/v1/replacements", json=body, headers=headers)
            assert r.status_code == 201, r.text
            outcomes.append(r.json())
        assert outcomes[-1]["state"] == "in_review"
        verdict, reasons = risk_of(db, str(outcomes[-1]["reference"]))
        assert (verdict, "many_applications_from_address" in reasons) == ("review", True)
        assert approved_orders(db, world.holder) == []
        assert_line_untouched(db, world.holder)
