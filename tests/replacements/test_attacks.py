"""The attack matrix of an online replacement: every proof missing, wrong, expired, reused or brute-forced.

An online application (``POST /api/v1/replacements``, channel ``online_mail``) carries four proofs besides
the signed-in session: the document number, the document photo, the selfie and a one-time code. Whatever
is wrong with one of them, no order is approved, the line keeps its SIM (no ``sim_changes`` row, the same
``sim_id``), and the attempt is on record: a failed ``proof_attempts`` row with a ``proof.failed`` audit
entry, or the failed check kept with a refused order. Input that is merely incomplete is refused with a
clear code and changes nothing. Biographical data alone never passes a high-assurance action.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from simkeep.auth.actors import ANONYMOUS, Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput
from simkeep.identity.assurance import Assurance, Method
from simkeep.identity.errors import AssuranceTooLow
from simkeep.identity.service import Evidence, ProofContext, assess, require
from simkeep.lines import protection
from simkeep.loss import service as loss_service
from simkeep.models import (
    AuditEntry,
    Channel,
    EvidenceFile,
    IdentityCheck,
    LineStatus,
    Notification,
    OneTimeCode,
    OrderState,
    ProofAttempt,
    ReplacementOrder,
    SimChange,
    SimStatus,
)
from simkeep.notifications.transports import read_outbox
from simkeep.replacements import service as replacements
from simkeep.replacements.errors import ActorNotAllowed
from tests import factories
from tests.helpers import line_headers, snapshot
from tests.online import id_card_with_portrait, photo, request_code, upload
from tests.replacements.conftest import World

#: A valid resident ID number that is not the test holder's (region 440304, born 1990-01-01).
OTHER_DOCUMENT = "44030419900101002X"
#: States an order reaches only once approved.
APPROVED_STATES = {
    OrderState.APPROVED,
    OrderState.AWAITING_PAYMENT,
    OrderState.PAID,
    OrderState.SIM_ASSIGNED,
    OrderState.SHIPPED,
    OrderState.DELIVERED,
    OrderState.ACTIVATED,
}
HIGH_ASSURANCE_ACTIONS = ("replacement.submit", "replacement.auto_approve", "loss.reinstate", "lock.off")


# --- what every refused attempt must leave behind --------------------------------------------------------


def assert_no_sim_change(world: World, db: Session) -> None:
    """No order of the line approved, the line on its old, working SIM, no SIM change recorded."""
    db.expire_all()
    line, sim = world.holder.line, world.holder.sim
    states = set(db.scalars(select(ReplacementOrder.state).where(ReplacementOrder.line_id == line.id)))
    assert not states & APPROVED_STATES, states
    assert line.sim_id == sim.id
    assert sim.status == SimStatus.ACTIVE
    changes = db.scalars(select(SimChange).where(SimChange.line_id == line.id)).all()
    assert [(c.old_sim_id, c.new_sim_id, c.order_id) for c in changes] == [(None, sim.id, None)]


def failed_proofs(db: Session, world: World) -> list[str]:
    """The methods of the line's failed proof attempts, oldest first."""
    db.expire_all()
    return list(
        db.scalars(
            select(ProofAttempt.method)
            .where(ProofAttempt.line_id == world.holder.line.id, ProofAttempt.passed.is_(False))
            .order_by(ProofAttempt.id)
        )
    )


def proof_failures_audited(db: Session, world: World) -> list[list[str]]:
    """The methods named by the line's ``proof.failed`` audit entries, oldest first."""
    db.expire_all()
    entries = db.scalars(
        select(AuditEntry)
        .where(
            AuditEntry.action == "proof.failed",
            AuditEntry.subject_type == "line",
            AuditEntry.subject_id == str(world.holder.line.id),
        )
        .order_by(AuditEntry.id)
    )
    return [list(e.data["methods"]) for e in entries]


def orders_of(db: Session, world: World) -> list[ReplacementOrder]:
    """The line's orders, oldest first."""
    db.expire_all()
    return list(
        db.scalars(
            select(ReplacementOrder)
            .where(ReplacementOrder.line_id == world.holder.line.id)
            .order_by(ReplacementOrder.id)
        )
    )


def checks_of(db: Session, order_reference: object) -> dict[str, str]:
    """The recorded verdict of each automatic check of an order."""
    db.expire_all()
    order = db.scalars(select(ReplacementOrder).where(ReplacementOrder.reference == order_reference)).one()
    return {
        c.kind: c.verdict for c in db.scalars(select(IdentityCheck).where(IdentityCheck.order_id == order.id))
    }


# --- building attempts ----------------------------------------------------------------------------------


def apply(world: World, headers: dict[str, str], fields: dict[str, str]) -> tuple[int, dict[str, object]]:
    """POST an online application for the holder's line with ``fields``; the status and the body."""
    body = {"msisdn": world.holder.msisdn, "channel": "online_mail", **fields}
    r = world.client.post("/api/v1/replacements", json=body, headers=headers)
    data: dict[str, object] = r.json()
    return r.status_code, data


def clean_application(world: World, headers: dict[str, str]) -> dict[str, str]:
    """A genuine application, one that is approved at once when handed in as it is."""
    return world.application(headers, portrait="obama.jpg", selfie="obama2.jpg")


def other_code(code: str) -> str:
    """A six-digit code that is not ``code``."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


def noise_jpeg(seed: int) -> bytes:
    """A photo of nothing (random pixels): no face, no document."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(640, 480, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def reject_with_stranger_selfie(world: World, headers: dict[str, str]) -> dict[str, str]:
    """Hand in an application with someone else's selfie (rejected at once); returns the fields used."""
    fields = world.application(headers, portrait="obama.jpg", selfie="biden.jpg")
    status, body = apply(world, headers, fields)
    assert (status, body["state"]) == (201, "rejected"), body
    return fields


@pytest.fixture
def holder(world: World) -> dict[str, str]:
    """The holder, signed in with the service password."""
    return world.holder_headers()


@pytest.fixture
def lenient(world: World) -> Iterator[Settings]:
    """The app with the self-service lock out of the way, to watch another guard on its own."""
    app_state = world.client.app.state  # type: ignore[attr-defined]
    original: Settings = app_state.settings
    app_state.settings = original.model_copy(update={"failed_proofs_before_lock": 1000})
    try:
        yield app_state.settings
    finally:
        app_state.settings = original


class TestOneTimeCode:
    """The one-time code sent for ``replacement.submit`` to a registered contact."""

    def test_missing_code_is_refused(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """Without the code the application is EVIDENCE_REQUIRED and changes nothing."""
        fields = clean_application(world, holder)
        del fields["one_time_code"]
        before = snapshot(db)
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (422, "EVIDENCE_REQUIRED")
        assert snapshot(db) == before
        assert_no_sim_change(world, db)

    def test_malformed_code_is_refused(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """A code that is not six digits is VALIDATION_FAILED and changes nothing."""
        fields = {**clean_application(world, holder), "one_time_code": "12345"}
        before = snapshot(db)
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (422, "VALIDATION_FAILED")
        assert snapshot(db) == before

    def test_wrong_code_fails_and_is_recorded(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """Another six digits: PROOF_FAILED, a failed one_time_code proof is kept and audited, no order."""
        fields = clean_application(world, holder)
        status, body = apply(world, holder, {**fields, "one_time_code": other_code(fields["one_time_code"])})
        assert (status, body["code"]) == (403, "PROOF_FAILED")
        assert failed_proofs(db, world) == ["one_time_code"]
        assert proof_failures_audited(db, world) == [["one_time_code"]]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_expired_code_fails(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """The right code after its five minutes: PROOF_FAILED, recorded, no order."""
        fields = clean_application(world, holder)
        db.execute(
            update(OneTimeCode)
            .where(OneTimeCode.line_id == world.holder.line.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (403, "PROOF_FAILED")
        assert failed_proofs(db, world) == ["one_time_code"]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_used_code_cannot_be_reused(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """A code that already carried an application fails in the next one, with new uploads."""
        used = reject_with_stranger_selfie(world, holder)
        fresh = world.application(holder, portrait="obama.jpg", selfie="obama2.jpg")
        status, body = apply(world, holder, {**fresh, "one_time_code": used["one_time_code"]})
        assert (status, body["code"]) == (403, "PROOF_FAILED")
        assert failed_proofs(db, world) == ["face_match", "one_time_code"]  # the stranger's face, then this
        assert [o.state for o in orders_of(db, world)] == [OrderState.REJECTED]
        assert_no_sim_change(world, db)

    def test_code_for_another_action_fails(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """A code asked for turning the SIM-change lock off does not authorise a replacement."""
        fields = clean_application(world, holder)
        lock_code = request_code(world.client, holder, world.outbox, purpose="lock.off")
        status, body = apply(world, holder, {**fields, "one_time_code": lock_code})
        assert (status, body["code"]) == (403, "PROOF_FAILED")
        assert failed_proofs(db, world) == ["one_time_code"]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_code_of_another_line_fails(
        self, world: World, db: Session, settings: Settings, holder: dict[str, str]
    ) -> None:
        """A code sent for someone else's line is worthless on this one."""
        fields = clean_application(world, holder)
        stranger = factories.holder(db, settings, name="李娜", document=OTHER_DOCUMENT)
        their_code = request_code(world.client, line_headers(world.client, stranger.msisdn), world.outbox)
        status, body = apply(world, holder, {**fields, "one_time_code": their_code})
        assert (status, body["code"]) == (403, "PROOF_FAILED")
        assert failed_proofs(db, world) == ["one_time_code"]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_brute_forced_code_locks_the_code(
        self, world: World, db: Session, holder: dict[str, str], lenient: Settings
    ) -> None:
        """After five wrong tries the code is locked: even the right code then fails."""
        fields = clean_application(world, holder)
        right = fields["one_time_code"]
        guesses = [f"{(int(right) + n) % 1_000_000:06d}" for n in range(1, lenient.otp_max_attempts + 1)]
        for guess in guesses:
            assert apply(world, holder, {**fields, "one_time_code": guess})[0] == 403
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (403, "PROOF_FAILED")
        db.expire_all()
        code = db.scalars(select(OneTimeCode).where(OneTimeCode.line_id == world.holder.line.id)).one()
        assert (code.attempts, code.consumed_at, code.locked_at is not None) == (5, None, True)
        assert failed_proofs(db, world) == ["one_time_code"] * 6
        assert len(proof_failures_audited(db, world)) == 6
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_repeated_wrong_codes_lock_self_service(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """Five failed proofs in an hour lock the line's self-service and alert the holder; the right code is
        then refused with SELF_SERVICE_LOCKED."""
        fields = clean_application(world, holder)
        for n in range(1, 6):
            wrong = f"{(int(fields['one_time_code']) + n) % 1_000_000:06d}"
            assert apply(world, holder, {**fields, "one_time_code": wrong})[1]["code"] == "PROOF_FAILED"
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (423, "SELF_SERVICE_LOCKED")
        db.expire_all()
        alerts = db.scalars(
            select(Notification.template).where(Notification.subscriber_id == world.holder.subscriber.id)
        ).all()
        assert "failed_proofs" in alerts
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)


class TestCodeToTheLostSim:
    """A one-time code never goes to the number whose SIM is being replaced."""

    def _phone_is_the_line(self, world: World, db: Session, *, email: bool) -> None:
        world.holder.subscriber.contact_phone = world.holder.msisdn
        if not email:
            world.holder.subscriber.contact_email = None
        db.flush()

    def test_no_code_is_sent_to_the_line_itself(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """With the line's own number as the only contact, asking for an SMS code is OTP_NO_CONTACT: no code
        is made and nothing is sent."""
        self._phone_is_the_line(world, db, email=False)
        before = snapshot(db)
        r = world.client.post(
            "/api/v1/one-time-codes", headers=holder, json={"purpose": "replacement.submit", "channel": "sms"}
        )
        assert (r.status_code, r.json()["code"]) == (422, "OTP_NO_CONTACT")
        assert snapshot(db) == before
        assert read_outbox(world.outbox) == []

    def test_email_code_does_not_go_to_the_line(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """With an e-mail as well, the SMS code is still refused and the e-mail code goes to the e-mail."""
        self._phone_is_the_line(world, db, email=True)
        r = world.client.post(
            "/api/v1/one-time-codes", headers=holder, json={"purpose": "replacement.submit", "channel": "sms"}
        )
        assert (r.status_code, r.json()["code"]) == (422, "OTP_NO_CONTACT")
        request_code(world.client, holder, world.outbox, channel="email")
        sent = [(m.channel, m.to) for m in read_outbox(world.outbox)]
        assert sent == [("email", world.holder.subscriber.contact_email)]

    def test_password_reset_code_does_not_go_to_the_line(self, world: World, db: Session) -> None:
        """The forgotten-password route answers as always, but sends no code to the line itself."""
        self._phone_is_the_line(world, db, email=False)
        r = world.client.post(
            "/api/v1/auth/password-reset",
            json={"msisdn": world.holder.msisdn, "document_number": factories.DOCUMENT, "channel": "sms"},
        )
        assert r.status_code == 202
        db.expire_all()
        assert db.scalar(select(func.count()).select_from(OneTimeCode)) == 0
        assert read_outbox(world.outbox) == []


class TestDocumentNumber:
    """The document number typed into the application."""

    def test_missing_number_is_refused(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """Without it the application is EVIDENCE_REQUIRED and changes nothing."""
        fields = clean_application(world, holder)
        del fields["document_number"]
        before = snapshot(db)
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (422, "EVIDENCE_REQUIRED")
        assert snapshot(db) == before

    def test_another_persons_number_fails(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """A valid number that is not the holder's: PROOF_FAILED, a failed biographical proof, no order."""
        fields = {**clean_application(world, holder), "document_number": OTHER_DOCUMENT}
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (403, "PROOF_FAILED")
        assert failed_proofs(db, world) == ["biographical"]
        assert proof_failures_audited(db, world) == [["biographical"]]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_mistyped_number_fails(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """The holder's number with one digit wrong (a bad check character): PROOF_FAILED, recorded."""
        typo = factories.DOCUMENT[:5] + "9" + factories.DOCUMENT[6:]
        status, body = apply(world, holder, {**clean_application(world, holder), "document_number": typo})
        assert (status, body["code"]) == (403, "PROOF_FAILED")
        assert failed_proofs(db, world) == ["biographical"]
        assert_no_sim_change(world, db)

    def test_guessing_numbers_locks_self_service(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """Trying number after number locks self-service within five tries; then even the right number and
        a fresh code are refused."""
        fields = clean_application(world, holder)
        refusals = []
        for day in range(1, 6):
            guess = f"110105194912{day:02d}"
            status, body = apply(world, holder, {**fields, "document_number": guess + "002X"})
            refusals.append(body["code"])
            if status == 423:
                break
        assert refusals[-1] == "SELF_SERVICE_LOCKED"
        assert set(refusals[:-1]) == {"PROOF_FAILED"}
        fresh_code = request_code(world.client, holder, world.outbox)
        status, body = apply(world, holder, {**fields, "one_time_code": fresh_code})
        assert (status, body["code"]) == (423, "SELF_SERVICE_LOCKED")
        assert "biographical" in failed_proofs(db, world)
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)


@pytest.mark.parametrize("kind", ["document_photo", "selfie"])
class TestUploads:
    """The two photos, named by the references of their uploads."""

    def test_missing_upload_is_refused(
        self, world: World, db: Session, holder: dict[str, str], kind: str
    ) -> None:
        """Without the reference the application is EVIDENCE_REQUIRED and changes nothing."""
        fields = clean_application(world, holder)
        del fields[kind]
        before = snapshot(db)
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (422, "EVIDENCE_REQUIRED")
        assert snapshot(db) == before

    def test_unknown_reference_fails_and_is_recorded(
        self, world: World, db: Session, holder: dict[str, str], kind: str
    ) -> None:
        """A reference that names no upload: EVIDENCE_NOT_FOUND, recorded as a failed proof, no order."""
        fields = {**clean_application(world, holder), kind: "EV-GUESSED1"}
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (404, "EVIDENCE_NOT_FOUND")
        assert failed_proofs(db, world) == [str(_method(kind))]
        assert proof_failures_audited(db, world) == [[str(_method(kind))]]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_upload_of_the_other_kind_fails(
        self, world: World, db: Session, holder: dict[str, str], kind: str
    ) -> None:
        """The holder's own upload of the other kind (the selfie named as the document photo, or the other
        way round) is not accepted: EVIDENCE_NOT_FOUND, recorded."""
        fields = clean_application(world, holder)
        other_kind = "selfie" if kind == "document_photo" else "document_photo"
        status, body = apply(world, holder, {**fields, kind: fields[other_kind]})
        assert (status, body["code"]) == (404, "EVIDENCE_NOT_FOUND")
        assert failed_proofs(db, world) == [str(_method(kind))]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_expired_upload_fails(self, world: World, db: Session, holder: dict[str, str], kind: str) -> None:
        """An upload older than a day is expired even before the purge has run: EVIDENCE_PURGED, recorded."""
        fields = clean_application(world, holder)
        db.execute(
            update(EvidenceFile)
            .where(EvidenceFile.reference == fields[kind])
            .values(uploaded_at=utcnow() - timedelta(hours=25))
        )
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (404, "EVIDENCE_PURGED")
        assert failed_proofs(db, world) == [str(_method(kind))]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_upload_used_once_cannot_be_reused(
        self, world: World, db: Session, holder: dict[str, str], kind: str
    ) -> None:
        """An upload that carried one application (rejected) cannot carry a second one."""
        used = reject_with_stranger_selfie(world, holder)
        fresh = world.application(holder, portrait="obama.jpg", selfie="obama2.jpg")
        status, body = apply(world, holder, {**fresh, kind: used[kind]})
        assert (status, body["code"]) == (404, "EVIDENCE_NOT_FOUND")
        assert failed_proofs(db, world) == [
            "face_match",
            str(_method(kind)),
        ]  # the stranger's face, then this
        assert [o.state for o in orders_of(db, world)] == [OrderState.REJECTED]
        assert_no_sim_change(world, db)

    def test_another_holders_upload_cannot_be_used(
        self, world: World, db: Session, settings: Settings, holder: dict[str, str], kind: str
    ) -> None:
        """Naming an upload of someone else's is refused and recorded against the applicant's line; the
        owner's upload stays unused and theirs to use."""
        victim = factories.holder(db, settings, name="李娜", document=OTHER_DOCUMENT)
        victim_headers = line_headers(world.client, victim.msisdn)
        theirs = upload(world.client, victim_headers, kind, photo("obama2.jpg").read_bytes())
        fields = {**clean_application(world, holder), kind: theirs}
        status, body = apply(world, holder, fields)
        assert (status, body["code"]) == (404, "EVIDENCE_NOT_FOUND")
        assert failed_proofs(db, world) == [str(_method(kind))]
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)
        db.expire_all()
        row = db.scalars(select(EvidenceFile).where(EvidenceFile.reference == theirs)).one()
        assert (row.line_id, row.order_id, row.ciphertext is not None) == (victim.line.id, None, True)

    def test_guessing_references_locks_self_service(
        self, world: World, db: Session, holder: dict[str, str], kind: str
    ) -> None:
        """Each guessed reference burns its code and is a failed proof; after five (all the codes an hour
        allows) self-service is locked, and the genuine uploads are refused too."""
        fields = clean_application(world, holder)
        code = fields["one_time_code"]
        for n in range(5):
            if n:
                code = request_code(world.client, holder, world.outbox)
            status, body = apply(world, holder, {**fields, kind: f"EV-GUESS{n:03d}", "one_time_code": code})
            assert (status, body["code"]) == (404, "EVIDENCE_NOT_FOUND")
        assert failed_proofs(db, world) == [str(_method(kind))] * 5
        status, body = apply(world, holder, {**fields, "one_time_code": code})
        assert (status, body["code"]) == (423, "SELF_SERVICE_LOCKED")
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)


def _method(kind: str) -> Method:
    return Method.DOCUMENT_PHOTO if kind == "document_photo" else Method.FACE_MATCH


class TestDocumentPhotoContent:
    """What the document photo shows."""

    def test_card_with_another_number_is_not_approved(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """A card showing another person's number, with the holder's number typed: the reading does not
        match, so a reviewer decides; nothing is approved."""
        fields = clean_application(world, holder)
        fields["document_photo"] = upload(
            world.client, holder, "document_photo", id_card_with_portrait(OTHER_DOCUMENT, photo("obama.jpg"))
        )
        status, body = apply(world, holder, fields)
        assert (status, body["state"]) == (201, "in_review")
        assert checks_of(db, body["reference"])["ocr"] == "review"
        assert body["new_sim_iccid"] is None
        assert_no_sim_change(world, db)

    def test_card_with_another_face_is_rejected(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """The holder's number on a card with someone else's portrait: the face does not match, rejected."""
        fields = world.application(holder, portrait="biden.jpg", selfie="obama2.jpg")
        status, body = apply(world, holder, fields)
        assert (status, body["state"]) == (201, "rejected")
        assert checks_of(db, body["reference"])["face"] == "reject"
        assert_no_sim_change(world, db)


class TestSelfieContent:
    """What the selfie shows."""

    def test_someone_elses_face_is_rejected(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """Another person's selfie: rejected with a reason, the face verdict kept, the rejection audited."""
        fields = world.application(holder, portrait="obama.jpg", selfie="biden.jpg")
        status, body = apply(world, holder, fields)
        assert (status, body["state"]) == (201, "rejected")
        assert "does not match" in str(body["decision_reason"])
        assert checks_of(db, body["reference"])["face"] == "reject"
        db.expire_all()
        rejected = db.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "replacement.reject", AuditEntry.subject_id == body["reference"]
            )
        ).one()
        assert rejected.actor == "system"
        assert_no_sim_change(world, db)

    def test_photo_without_a_face_is_rejected(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """A "selfie" with no face in it is rejected, not approved."""
        fields = clean_application(world, holder)
        fields["selfie"] = upload(world.client, holder, "selfie", noise_jpeg(3))
        status, body = apply(world, holder, fields)
        assert (status, body["state"]) == (201, "rejected")
        assert checks_of(db, body["reference"])["face"] == "reject"
        assert_no_sim_change(world, db)

    def test_repeated_selfie_attempts_run_out_of_codes(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """Each try needs a fresh code and fresh uploads; after five rejected tries in an hour no sixth
        code is sent (OTP_RATE_LIMITED)."""
        for _ in range(5):
            reject_with_stranger_selfie(world, holder)
        r = world.client.post(
            "/api/v1/one-time-codes",
            headers=holder,
            json={"purpose": "replacement.submit", "channel": "email"},
        )
        assert (r.status_code, r.json()["code"]) == (429, "OTP_RATE_LIMITED")
        assert {o.state for o in orders_of(db, world)} == {OrderState.REJECTED}
        assert_no_sim_change(world, db)

    def test_rejected_face_counts_as_a_failed_proof(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """A face that does not match is a failed proof like a wrong code (DOMAIN.md section 5)."""
        reject_with_stranger_selfie(world, holder)
        assert str(Method.FACE_MATCH) in failed_proofs(db, world)


def _line_actor(world: World, *methods: str) -> Actor:
    """The holder acting on the line with only ``methods`` proven so far."""
    return Actor(
        kind="line",
        label=f"line:{world.holder.line.id}",
        line_id=world.holder.line.id,
        assurance=Assurance.LOW,
        proof_methods=methods,
    )


BIOGRAPHICAL = Evidence(real_name="张伟", document_number=factories.DOCUMENT)


class TestBiographicalDataAlone:
    """Name, birth date and ID number are readily available: they may suspend a line, never more."""

    @pytest.mark.parametrize("action", HIGH_ASSURANCE_ACTIONS)
    def test_correct_details_give_low_assurance_only(
        self, world: World, db: Session, settings: Settings, action: str
    ) -> None:
        """The right name and ID number check out, yet count as low assurance: refused for every
        high-assurance action with ASSURANCE_TOO_LOW."""
        ctx = ProofContext(
            session=db,
            settings=settings,
            line=world.holder.line,
            subscriber=world.holder.subscriber,
            actor=ANONYMOUS,
            action=action,
        )
        assessment = assess(ctx, BIOGRAPHICAL)
        assert assessment.assurance == Assurance.LOW
        with pytest.raises(AssuranceTooLow) as refused:
            require(assessment, action, settings)
        assert refused.value.details["given"] == "low"

    def test_replacement_needs_more_than_the_id_number(
        self, world: World, db: Session, holder: dict[str, str]
    ) -> None:
        """An online application with the ID number and nothing else is EVIDENCE_REQUIRED; nothing changes."""
        before = snapshot(db)
        status, body = apply(world, holder, {"document_number": factories.DOCUMENT})
        assert (status, body["code"]) == (422, "EVIDENCE_REQUIRED")
        assert snapshot(db) == before
        assert_no_sim_change(world, db)

    def test_replacement_service_refuses_details_alone(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """Below the API, name and ID number without the photos and the code open no order on any channel."""
        actor = _line_actor(world, str(Method.BIOGRAPHICAL))
        for channel in (Channel.ONLINE_MAIL, Channel.ESIM):
            with pytest.raises(InvalidInput) as refused:
                replacements.submit(
                    db,
                    settings,
                    actor=actor,
                    msisdn=world.holder.msisdn,
                    channel=channel,
                    evidence=BIOGRAPHICAL,
                )
            assert refused.value.code == "EVIDENCE_REQUIRED"
        with pytest.raises(ActorNotAllowed):
            replacements.submit(
                db,
                settings,
                actor=actor,
                msisdn=world.holder.msisdn,
                channel=Channel.STORE,
                evidence=BIOGRAPHICAL,
            )
        assert orders_of(db, world) == []
        assert_no_sim_change(world, db)

    def test_reinstatement_refuses_details_alone(self, world: World, db: Session) -> None:
        """A line suspended by an anonymous report with the holder's name cannot be reinstated with the
        same details: anonymously SIGN_IN_REQUIRED, signed in VALIDATION_FAILED; it stays suspended."""
        r = world.client.post(
            "/api/v1/loss-reports",
            json={"msisdn": world.holder.msisdn, "real_name": "张伟", "reason": "stolen"},
        )
        assert r.status_code == 201
        path = f"/api/v1/lines/{world.holder.msisdn}/reinstatement"
        details = {"real_name": "张伟", "document_number": factories.DOCUMENT}
        headers = world.holder_headers()
        before = snapshot(db)
        anonymous = world.client.post(path, json=details)
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "SIGN_IN_REQUIRED")
        signed_in = world.client.post(path, json=details, headers=headers)
        assert (signed_in.status_code, signed_in.json()["code"]) == (422, "VALIDATION_FAILED")
        assert snapshot(db) == before
        db.expire_all()
        assert world.holder.line.status == LineStatus.SUSPENDED

    def test_reinstatement_service_refuses_details_alone(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """Below the API, a holder proven only by name and ID number gets ASSURANCE_TOO_LOW."""
        world.client.post("/api/v1/loss-reports", json={"msisdn": world.holder.msisdn, "real_name": "张伟"})
        with pytest.raises(AssuranceTooLow):
            loss_service.reinstate(
                db,
                settings,
                actor=_line_actor(world, str(Method.BIOGRAPHICAL)),
                msisdn=world.holder.msisdn,
                evidence=BIOGRAPHICAL,
            )
        db.expire_all()
        assert (world.holder.line.status, world.holder.sim.status) == (
            LineStatus.SUSPENDED,
            SimStatus.SUSPENDED,
        )

    def test_lock_off_refuses_details_alone(self, world: World, db: Session, holder: dict[str, str]) -> None:
        """With the lock on, details in the request are VALIDATION_FAILED and the session alone is
        ASSURANCE_TOO_LOW; the lock stays on."""
        path = f"/api/v1/lines/{world.holder.msisdn}/sim-change-lock"
        assert world.client.put(path, json={"on": True}, headers=holder).status_code == 200
        before = snapshot(db)
        with_details = world.client.put(
            path, json={"on": False, "document_number": factories.DOCUMENT}, headers=holder
        )
        assert (with_details.status_code, with_details.json()["code"]) == (422, "VALIDATION_FAILED")
        bare = world.client.put(path, json={"on": False}, headers=holder)
        assert (bare.status_code, bare.json()["code"]) == (403, "ASSURANCE_TOO_LOW")
        assert snapshot(db) == before
        db.expire_all()
        assert world.holder.line.sim_change_lock is True

    def test_lock_off_service_refuses_details_alone(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """Below the API, name and ID number do not turn the lock off."""
        world.holder.line.sim_change_lock = True
        db.flush()
        with pytest.raises(AssuranceTooLow):
            protection.set_sim_change_lock(
                db,
                settings,
                actor=_line_actor(world, str(Method.BIOGRAPHICAL)),
                msisdn=world.holder.msisdn,
                on=False,
                evidence=BIOGRAPHICAL,
            )
        db.expire_all()
        assert world.holder.line.sim_change_lock is True
