"""Evidence over the API and in the vault: uploads, who may open them, audit, nothing in clear, purge.

``POST /api/v1/evidence`` (the holder uploads), ``GET /api/v1/evidence/{reference}/content`` (reviewers and
admins open a file, audited), ``GET /api/v1/replacements/{reference}/review`` (the verdicts and the files of
an order) and :func:`simkeep.identity.evidence.purge` (photos go after the retention period, verdicts stay).
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import structlog
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from simkeep.app import create_app
from simkeep.audit.service import link_pending, verify_chain
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import Base, utcnow
from simkeep.db.engine import make_session_factory
from simkeep.identity import evidence, otp
from simkeep.identity.application import PASS, REJECT, REVIEW, CheckOutcome, OnlineApplication
from simkeep.identity.assurance import Assurance
from simkeep.identity.service import Evidence
from simkeep.logging import configure_logging
from simkeep.models import (
    AuditEntry,
    Channel,
    EvidenceFile,
    IdentityCheck,
    OrderState,
    ReplacementOrder,
    StaffRole,
)
from simkeep.replacements import service as replacements
from tests import factories
from tests.helpers import count, line_headers, snapshot, staff_headers
from tests.online import id_card_with_portrait, online_application, photo

#: The 17 digits of the test holder's ID number: found anywhere, the number is stored or logged in clear.
ID_DIGITS = factories.DOCUMENT[:17]
#: The second holder's ID number (a valid one: region 440304, born 1990-01-01).
OTHER_DOCUMENT = "44030419900101002X"

PASSING = (
    CheckOutcome("document", PASS),
    CheckOutcome("ocr", PASS),
    CheckOutcome("face", PASS, (), 0.31),
)
REVIEWED = (
    CheckOutcome("document", PASS),
    CheckOutcome("ocr", PASS),
    CheckOutcome("face", REVIEW, ("face_review_band",), 0.52),
)
REJECTED = (
    CheckOutcome("document", PASS),
    CheckOutcome("ocr", REVIEW, ("number_not_read",)),
    CheckOutcome("face", REJECT, ("face_mismatch", "The selfie does not match the document photo."), 0.81),
)


def noise_jpeg(seed: int, size: tuple[int, int] = (160, 200)) -> bytes:
    """A small JPEG of random pixels: every chunk of it is distinctive."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def line_actor(holder: factories.Holder) -> Actor:
    """The holder, signed in with the service password, as the API resolves a line token."""
    return Actor(
        kind="line",
        label=f"line:{holder.line.id}",
        line_id=holder.line.id,
        assurance=Assurance.MEDIUM,
        proof_methods=("service_password",),
    )


def upload(db: Session, settings: Settings, holder: factories.Holder, kind: str, seed: int) -> EvidenceFile:
    """An upload by the holder, through the evidence service."""
    return evidence.store_upload(
        db, settings, actor=line_actor(holder), kind=kind, data=noise_jpeg(seed), declared_type="image/jpeg"
    )


def apply_online(
    db: Session,
    settings: Settings,
    holder: factories.Holder,
    checks: Iterable[CheckOutcome],
    *,
    seed: int = 0,
    document_number: str = factories.DOCUMENT,
) -> ReplacementOrder:
    """An online application with real uploads and a real code; ``checks`` stand for the slow checks."""
    document = upload(db, settings, holder, "document_photo", seed)
    selfie = upload(db, settings, holder, "selfie", seed + 1)
    _row, code = otp.issue_code(
        db,
        settings,
        line=holder.line,
        subscriber=holder.subscriber,
        purpose="replacement.submit",
        channel="email",
    )
    return replacements.submit(
        db,
        settings,
        actor=line_actor(holder),
        msisdn=holder.msisdn,
        channel=Channel.ONLINE_MAIL,
        evidence=Evidence(),
        application=OnlineApplication(document_number, document.reference, selfie.reference, code),
        checks=list(checks),
    )


def files_of(db: Session, order: ReplacementOrder) -> list[EvidenceFile]:
    """The order's evidence rows, fresh from the database."""
    db.expire_all()
    return list(db.scalars(select(EvidenceFile).where(EvidenceFile.order_id == order.id)))


def verdicts_of(db: Session, order: ReplacementOrder) -> list[tuple[object, ...]]:
    """The order's recorded checks: kind, verdict, score, reasons."""
    db.expire_all()
    rows = db.scalars(
        select(IdentityCheck).where(IdentityCheck.order_id == order.id).order_by(IdentityCheck.id)
    )
    return [(c.kind, c.verdict, c.score, tuple(c.reasons)) for c in rows]


def audits(db: Session, action: str) -> list[AuditEntry]:
    """Audit entries of one action, oldest first."""
    link_pending(db)
    db.expire_all()
    return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def in_days(days: float) -> datetime:
    """A moment ``days`` from now."""
    return utcnow() + timedelta(days=days)


def chunks(data: bytes, size: int = 48) -> list[bytes]:
    """Three distinctive pieces of a file, from a quarter, the middle and three quarters in."""
    return [data[len(data) * q // 4 : len(data) * q // 4 + size] for q in (1, 2, 3)]


def text_forms(chunk: bytes) -> list[str]:
    """The ways a piece of a file shows up in text: hex, base64 (at each alignment), repr, latin-1."""
    forms = [chunk.hex(), repr(chunk)[2:-1], chunk.decode("latin-1")]
    for shift in range(3):
        encoded = base64.b64encode(chunk[shift:]).decode()
        forms.append(encoded[4:-4])
    return forms


def dump_tables(db: Session) -> bytes:
    """Every row of every table, bytes as they are and every other value as text: a dump made with SQL."""
    out = bytearray()
    for name, table in Base.metadata.tables.items():
        out += f"-- {name}\n".encode()
        for row in db.execute(select(table)):
            for value in row:
                out += value if isinstance(value, bytes) else str(value).encode()
                out += b"\t"
            out += b"\n"
    return bytes(out)


@dataclass
class Desk:
    """Two holders, each signed in, and staff of every role."""

    client: TestClient
    db: Session
    settings: Settings
    holder: factories.Holder
    other: factories.Holder
    clerk: dict[str, str]
    reviewer: dict[str, str]
    admin: dict[str, str]

    def holder_headers(self, holder: factories.Holder | None = None) -> dict[str, str]:
        """A holder (the first by default) signed in with the service password."""
        return line_headers(self.client, (holder or self.holder).msisdn)

    def upload(self, kind: str = "document_photo", data: bytes | None = None) -> str:
        """Upload through the API as the first holder; returns the reference."""
        r = self.client.post(
            "/api/v1/evidence",
            headers=self.holder_headers(),
            data={"kind": kind},
            files={"file": ("photo.jpg", data or noise_jpeg(7), "image/jpeg")},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["reference"])

    def open(self, reference: str, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        """GET the file's content: status, body, headers."""
        r = self.client.get(f"/api/v1/evidence/{reference}/content", headers=headers)
        return r.status_code, r.content, dict(r.headers)


@pytest.fixture
def desk(client: TestClient, db: Session, settings: Settings) -> Desk:
    """The people of these tests."""
    store = factories.store(db)
    clerk = factories.staff(db, StaffRole.CLERK, store_row=store)
    reviewer = factories.staff(db, StaffRole.REVIEWER)
    admin = factories.staff(db, StaffRole.ADMIN)
    return Desk(
        client=client,
        db=db,
        settings=settings,
        holder=factories.holder(db, settings),
        other=factories.holder(db, settings, name="李娜", document=OTHER_DOCUMENT),
        clerk=staff_headers(client, clerk.username),
        reviewer=staff_headers(client, reviewer.username),
        admin=staff_headers(client, admin.username),
    )


class TestUpload:
    """``POST /api/v1/evidence``: the signed-in holder uploads a photo, which is cleaned and encrypted."""

    def test_upload_is_stored_encrypted(self, desk: Desk) -> None:
        """The row keeps the key id, a nonce and ciphertext that holds none of the photo."""
        original = noise_jpeg(11)
        reference = desk.upload("selfie", original)
        desk.db.expire_all()
        row = desk.db.scalars(select(EvidenceFile).where(EvidenceFile.reference == reference)).one()
        assert (row.kind, row.line_id, row.order_id) == ("selfie", desk.holder.line.id, None)
        assert row.key_id == "derived"
        assert row.nonce is not None and len(row.nonce) == 12
        clean = evidence.decrypt(desk.settings, row)
        assert row.size_bytes == len(clean)
        assert row.ciphertext is not None
        assert not any(c in row.ciphertext for c in chunks(clean) + chunks(original))

    def test_upload_is_audited_without_its_bytes(self, desk: Desk) -> None:
        """The audit entry names the file, its kind and size, and nothing of its content."""
        reference = desk.upload()
        [entry] = audits(desk.db, "evidence.uploaded")
        assert entry.actor == f"line:{desk.holder.line.id}"
        assert entry.data["evidence"] == reference
        assert set(entry.data) == {"evidence", "kind", "bytes"}

    def test_staff_cannot_upload(self, desk: Desk) -> None:
        """Evidence is the holder's own: a reviewer's upload is LINE_SIGN_IN_REQUIRED and stores nothing."""
        before = snapshot(desk.db, exclude=())
        r = desk.client.post(
            "/api/v1/evidence",
            headers=desk.reviewer,
            data={"kind": "selfie"},
            files={"file": ("s.jpg", noise_jpeg(1), "image/jpeg")},
        )
        assert r.status_code == 401
        assert r.json()["code"] == "LINE_SIGN_IN_REQUIRED"
        assert snapshot(desk.db, exclude=()) == before

    def test_anonymous_cannot_upload(self, desk: Desk) -> None:
        """Without a sign-in nothing is stored."""
        before = snapshot(desk.db, exclude=())
        r = desk.client.post(
            "/api/v1/evidence",
            data={"kind": "selfie"},
            files={"file": ("s.jpg", noise_jpeg(1), "image/jpeg")},
        )
        assert r.status_code == 401
        assert r.json()["code"] == "LINE_SIGN_IN_REQUIRED"
        assert snapshot(desk.db, exclude=()) == before

    def test_not_an_image_is_refused(self, desk: Desk) -> None:
        """A file that is no photo is UPLOAD_REJECTED with its reason, and nothing is stored."""
        headers = desk.holder_headers()
        before = snapshot(desk.db)
        r = desk.client.post(
            "/api/v1/evidence",
            headers=headers,
            data={"kind": "document_photo"},
            files={"file": ("id.jpg", b"%PDF-1.7 not a photo", "image/jpeg")},
        )
        assert r.status_code == 422
        assert (r.json()["code"], r.json()["details"]["reason"]) == ("UPLOAD_REJECTED", "UNSUPPORTED_TYPE")
        assert snapshot(desk.db) == before

    def test_unknown_kind_is_refused(self, desk: Desk) -> None:
        """Only a document photo or a selfie is taken."""
        headers = desk.holder_headers()
        before = snapshot(desk.db)
        r = desk.client.post(
            "/api/v1/evidence",
            headers=headers,
            data={"kind": "utility_bill"},
            files={"file": ("b.jpg", noise_jpeg(1), "image/jpeg")},
        )
        assert r.status_code == 422
        assert r.json()["code"] == "VALIDATION_FAILED"
        assert snapshot(desk.db) == before


class TestOpening:
    """``GET /api/v1/evidence/{reference}/content``: reviewers and admins only, every opening audited."""

    def test_reviewer_opens_the_cleaned_photo(self, desk: Desk) -> None:
        """A reviewer gets the cleaned JPEG, marked not to be cached."""
        reference = desk.upload()
        status, body, headers = desk.open(reference, desk.reviewer)
        assert status == 200
        assert headers["content-type"] == "image/jpeg"
        assert headers["cache-control"] == "no-store"
        assert headers["x-content-type-options"] == "nosniff"
        with Image.open(io.BytesIO(body)) as image:
            assert (image.format, image.size) == ("JPEG", (160, 200))
            assert not image.getexif()

    def test_admin_opens_evidence(self, desk: Desk) -> None:
        """An admin may open evidence too."""
        reference = desk.upload()
        assert desk.open(reference, desk.admin)[0] == 200

    def test_every_opening_is_audited(self, desk: Desk) -> None:
        """Each opening adds an audit entry naming who opened which file; the chain stays intact."""
        reference = desk.upload()
        desk.open(reference, desk.reviewer)
        desk.open(reference, desk.reviewer)
        desk.open(reference, desk.admin)
        entries = audits(desk.db, "evidence.viewed")
        assert [e.data["evidence"] for e in entries] == [reference] * 3
        assert [e.actor.split(":")[0] for e in entries] == ["staff"] * 3
        assert entries[0].actor == entries[1].actor != entries[2].actor
        assert verify_chain(desk.db).ok

    def test_opening_an_order_file_names_the_order(self, desk: Desk) -> None:
        """The audit entry of a file used in an application is filed under that order."""
        order = apply_online(desk.db, desk.settings, desk.holder, REVIEWED)
        [document, _selfie] = sorted(files_of(desk.db, order), key=lambda f: f.kind)
        desk.open(document.reference, desk.reviewer)
        [entry] = audits(desk.db, "evidence.viewed")
        assert (entry.subject_type, entry.subject_id) == ("replacement_order", order.reference)
        assert entry.data == {"evidence": document.reference, "kind": "document_photo"}

    def test_clerk_cannot_open_evidence(self, desk: Desk) -> None:
        """A clerk's role does not allow it: ROLE_NOT_ALLOWED, no content, nothing audited."""
        reference = desk.upload()
        before = snapshot(desk.db, exclude=("auth_tokens",))
        r = desk.client.get(f"/api/v1/evidence/{reference}/content", headers=desk.clerk)
        assert r.status_code == 403
        assert r.json()["code"] == "ROLE_NOT_ALLOWED"
        assert snapshot(desk.db, exclude=("auth_tokens",)) == before

    def test_holder_cannot_open_own_evidence(self, desk: Desk) -> None:
        """Not even the holder who uploaded it: STAFF_SIGN_IN_REQUIRED."""
        reference = desk.upload()
        headers = desk.holder_headers()
        before = snapshot(desk.db, exclude=("auth_tokens",))
        r = desk.client.get(f"/api/v1/evidence/{reference}/content", headers=headers)
        assert r.status_code == 401
        assert r.json()["code"] == "STAFF_SIGN_IN_REQUIRED"
        assert snapshot(desk.db, exclude=("auth_tokens",)) == before

    def test_anonymous_cannot_open_evidence(self, desk: Desk) -> None:
        """Without a sign-in: STAFF_SIGN_IN_REQUIRED, nothing audited."""
        reference = desk.upload()
        before = snapshot(desk.db, exclude=())
        r = desk.client.get(f"/api/v1/evidence/{reference}/content")
        assert r.status_code == 401
        assert r.json()["code"] == "STAFF_SIGN_IN_REQUIRED"
        assert snapshot(desk.db, exclude=()) == before

    def test_service_refuses_a_clerk_too(self, desk: Desk) -> None:
        """Below the API, the evidence service itself answers a clerk as if the file did not exist."""
        reference = desk.upload()
        clerk = Actor(kind="staff", label="staff:c", staff_user_id=1, role=StaffRole.CLERK)
        with pytest.raises(evidence.EvidenceNotFound):
            evidence.view(desk.db, desk.settings, actor=clerk, reference=reference)
        assert audits(desk.db, "evidence.viewed") == []

    def test_unknown_reference_is_not_found(self, desk: Desk) -> None:
        """A reference that does not exist is EVIDENCE_NOT_FOUND and audits nothing."""
        before = snapshot(desk.db, exclude=("auth_tokens",))
        r = desk.client.get("/api/v1/evidence/EV-NOPE/content", headers=desk.reviewer)
        assert r.status_code == 404
        assert r.json()["code"] == "EVIDENCE_NOT_FOUND"
        assert snapshot(desk.db, exclude=("auth_tokens",)) == before

    def test_tampered_ciphertext_is_refused(self, desk: Desk) -> None:
        """A ciphertext changed in the database is VAULT_ERROR: no image leaves, nothing is audited."""
        reference = desk.upload()
        row = desk.db.scalars(select(EvidenceFile).where(EvidenceFile.reference == reference)).one()
        assert row.ciphertext is not None
        tampered = bytes([row.ciphertext[0] ^ 0xFF]) + row.ciphertext[1:]
        desk.db.execute(update(EvidenceFile).where(EvidenceFile.id == row.id).values(ciphertext=tampered))
        desk.db.expire_all()
        r = desk.client.get(f"/api/v1/evidence/{reference}/content", headers=desk.reviewer)
        assert r.status_code == 500
        assert r.json()["code"] == "VAULT_ERROR"
        assert audits(desk.db, "evidence.viewed") == []

    def test_ciphertext_swapped_between_files_is_refused(self, desk: Desk) -> None:
        """Copying one file's nonce and ciphertext onto another row does not open it: VAULT_ERROR."""
        mine, theirs = desk.upload("selfie", noise_jpeg(1)), desk.upload("selfie", noise_jpeg(2))
        source = desk.db.scalars(select(EvidenceFile).where(EvidenceFile.reference == theirs)).one()
        desk.db.execute(
            update(EvidenceFile)
            .where(EvidenceFile.reference == mine)
            .values(nonce=source.nonce, ciphertext=source.ciphertext)
        )
        desk.db.expire_all()
        r = desk.client.get(f"/api/v1/evidence/{mine}/content", headers=desk.reviewer)
        assert r.status_code == 500
        assert r.json()["code"] == "VAULT_ERROR"

    def test_file_sealed_under_an_old_key_opens_after_rotation(self, desk: Desk) -> None:
        """Upload under k1, put a new k2 first: the old file still opens, new files are sealed under k2."""
        k1 = "k1:" + base64.b64encode(bytes(range(32))).decode()
        k2 = "k2:" + base64.b64encode(bytes(range(32, 64))).decode()
        app_state = desk.client.app.state  # type: ignore[attr-defined]
        app_state.settings = desk.settings.model_copy(update={"vault_keys": k1})
        old = desk.upload("selfie", noise_jpeg(3))
        _status, before_rotation, _headers = desk.open(old, desk.reviewer)
        app_state.settings = desk.settings.model_copy(update={"vault_keys": f"{k2},{k1}"})
        status, after_rotation, _headers = desk.open(old, desk.reviewer)
        new = desk.upload("selfie", noise_jpeg(4))
        assert (status, after_rotation) == (200, before_rotation)
        desk.db.expire_all()
        keys = {f.reference: f.key_id for f in desk.db.scalars(select(EvidenceFile))}
        assert (keys[old], keys[new]) == ("k1", "k2")

    def test_file_under_a_dropped_key_is_refused(self, desk: Desk) -> None:
        """Once its key is removed from the settings, a file gives VAULT_ERROR naming the key."""
        k1 = "k1:" + base64.b64encode(bytes(range(32))).decode()
        k2 = "k2:" + base64.b64encode(bytes(range(32, 64))).decode()
        app_state = desk.client.app.state  # type: ignore[attr-defined]
        app_state.settings = desk.settings.model_copy(update={"vault_keys": k1})
        reference = desk.upload()
        app_state.settings = desk.settings.model_copy(update={"vault_keys": k2})
        r = desk.client.get(f"/api/v1/evidence/{reference}/content", headers=desk.reviewer)
        assert r.status_code == 500
        assert (r.json()["code"], "'k1'" in r.json()["detail"]) == ("VAULT_ERROR", True)


class TestReview:
    """``GET /api/v1/replacements/{reference}/review``: the verdicts, scores and files of an order."""

    def test_reviewer_sees_verdicts_scores_and_files(self, desk: Desk) -> None:
        """The review lists every check with its score and both files, without their bytes."""
        order = apply_online(desk.db, desk.settings, desk.holder, REVIEWED)
        r = desk.client.get(f"/api/v1/replacements/{order.reference}/review", headers=desk.reviewer)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["order"]["state"] == "in_review"
        checks = {c["kind"]: (c["verdict"], c["score"]) for c in body["checks"]}
        assert checks == {
            "document": ("pass", None),
            "ocr": ("pass", None),
            "face": ("review", 0.52),
            "risk": ("pass", None),
        }
        assert {(e["kind"], e["purged"]) for e in body["evidence"]} == {
            ("document_photo", False),
            ("selfie", False),
        }
        assert ID_DIGITS not in r.text

    def test_opening_a_review_is_audited(self, desk: Desk) -> None:
        """Who looked at an order's review is on record."""
        order = apply_online(desk.db, desk.settings, desk.holder, REVIEWED)
        desk.client.get(f"/api/v1/replacements/{order.reference}/review", headers=desk.admin)
        [entry] = audits(desk.db, "replacement.review_opened")
        assert entry.subject_id == order.reference

    def test_clerk_cannot_open_a_review(self, desk: Desk) -> None:
        """Reviewing is not a clerk's role: ROLE_NOT_ALLOWED, nothing audited."""
        order = apply_online(desk.db, desk.settings, desk.holder, REVIEWED)
        before = snapshot(desk.db, exclude=("auth_tokens",))
        r = desk.client.get(f"/api/v1/replacements/{order.reference}/review", headers=desk.clerk)
        assert r.status_code == 403
        assert r.json()["code"] == "ROLE_NOT_ALLOWED"
        assert snapshot(desk.db, exclude=("auth_tokens",)) == before

    def test_holder_cannot_open_own_review(self, desk: Desk) -> None:
        """The applicant does not see the reviewer's view of the application."""
        order = apply_online(desk.db, desk.settings, desk.holder, REVIEWED)
        r = desk.client.get(f"/api/v1/replacements/{order.reference}/review", headers=desk.holder_headers())
        assert r.status_code == 401
        assert r.json()["code"] == "STAFF_SIGN_IN_REQUIRED"
        assert audits(desk.db, "replacement.review_opened") == []


class TestPurge:
    """``evidence.purge``: ciphertext of closed orders goes after the retention period; verdicts stay."""

    def test_evidence_of_long_closed_order_is_purged(self, desk: Desk) -> None:
        """Thirty-one days after an order closed, its files lose their nonce and ciphertext."""
        order = apply_online(desk.db, desk.settings, desk.holder, REJECTED)
        assert order.state == OrderState.REJECTED
        report = evidence.purge(desk.db, desk.settings, now=in_days(31))
        assert (report.closed_orders, report.orphans) == (2, 0)
        files = files_of(desk.db, order)
        assert [(f.ciphertext, f.nonce) for f in files] == [(None, None), (None, None)]
        assert all(f.purged_at is not None for f in files)

    def test_verdicts_and_scores_are_kept(self, desk: Desk) -> None:
        """The identity checks of a purged order stay exactly as they were, and so do the file rows."""
        order = apply_online(desk.db, desk.settings, desk.holder, REJECTED)
        verdicts = verdicts_of(desk.db, order)
        evidence.purge(desk.db, desk.settings, now=in_days(31))
        assert verdicts_of(desk.db, order) == verdicts
        assert (
            "face",
            "reject",
            0.81,
            ("face_mismatch", "The selfie does not match the document photo."),
        ) in (verdicts)
        assert {(f.kind, f.size_bytes > 0) for f in files_of(desk.db, order)} == {
            ("document_photo", True),
            ("selfie", True),
        }

    def test_recently_closed_order_keeps_its_evidence(self, desk: Desk) -> None:
        """Twenty-nine days after closing the files are still there."""
        order = apply_online(desk.db, desk.settings, desk.holder, REJECTED)
        report = evidence.purge(desk.db, desk.settings, now=in_days(29))
        assert (report.closed_orders, report.orphans) == (0, 0)
        assert all(f.ciphertext is not None for f in files_of(desk.db, order))

    def test_open_order_keeps_its_evidence(self, desk: Desk) -> None:
        """An order still open (in review, or approved) keeps its files however old they are."""
        reviewed = apply_online(desk.db, desk.settings, desk.holder, REVIEWED)
        approved = apply_online(
            desk.db, desk.settings, desk.other, PASSING, seed=10, document_number=OTHER_DOCUMENT
        )
        assert (reviewed.state, approved.state) == (OrderState.IN_REVIEW, OrderState.AWAITING_PAYMENT)
        report = evidence.purge(desk.db, desk.settings, now=in_days(365))
        assert (report.closed_orders, report.orphans) == (0, 0)
        assert all(
            f.ciphertext is not None for f in files_of(desk.db, reviewed) + files_of(desk.db, approved)
        )

    def test_retention_period_follows_the_settings(self, desk: Desk) -> None:
        """With a 7-day retention, eight days after closing is enough."""
        order = apply_online(desk.db, desk.settings, desk.holder, REJECTED)
        short = desk.settings.model_copy(update={"evidence_retention_days": 7})
        assert evidence.purge(desk.db, short, now=in_days(6)).closed_orders == 0
        assert evidence.purge(desk.db, short, now=in_days(8)).closed_orders == 2
        assert all(f.ciphertext is None for f in files_of(desk.db, order))

    def test_unused_upload_is_purged_after_a_day(self, desk: Desk) -> None:
        """An upload never named in an application is wiped 24 hours after it came in."""
        row = upload(desk.db, desk.settings, desk.holder, "selfie", 5)
        report = evidence.purge(desk.db, desk.settings, now=utcnow() + timedelta(hours=25))
        assert (report.closed_orders, report.orphans) == (0, 1)
        desk.db.expire_all()
        assert (row.ciphertext, row.nonce, row.order_id) == (None, None, None)
        assert row.purged_at is not None

    def test_fresh_unused_upload_is_kept(self, desk: Desk) -> None:
        """An upload of the last 24 hours may still be used in an application."""
        row = upload(desk.db, desk.settings, desk.holder, "selfie", 5)
        report = evidence.purge(desk.db, desk.settings, now=utcnow() + timedelta(hours=23))
        assert (report.closed_orders, report.orphans) == (0, 0)
        desk.db.expire_all()
        assert row.ciphertext is not None

    def test_purge_is_audited_with_its_counts(self, desk: Desk) -> None:
        """A purge that deleted something leaves an audit entry with how many files of each sort."""
        apply_online(desk.db, desk.settings, desk.holder, REJECTED)
        upload(desk.db, desk.settings, desk.other, "selfie", 9)
        evidence.purge(desk.db, desk.settings, now=in_days(31))
        [entry] = audits(desk.db, "evidence.purged")
        assert (entry.actor, entry.data) == ("system", {"closed_orders": 2, "orphans": 1})
        assert verify_chain(desk.db).ok

    def test_second_purge_finds_nothing(self, desk: Desk) -> None:
        """Purging again deletes nothing more and audits nothing."""
        apply_online(desk.db, desk.settings, desk.holder, REJECTED)
        evidence.purge(desk.db, desk.settings, now=in_days(31))
        before = snapshot(desk.db, exclude=())
        report = evidence.purge(desk.db, desk.settings, now=in_days(32))
        assert (report.closed_orders, report.orphans) == (0, 0)
        assert snapshot(desk.db, exclude=()) == before

    def test_opening_purged_evidence_is_a_clear_error(self, desk: Desk) -> None:
        """A reviewer opening a purged file gets EVIDENCE_PURGED, which says the verdicts remain."""
        order = apply_online(desk.db, desk.settings, desk.holder, REJECTED)
        evidence.purge(desk.db, desk.settings, now=in_days(31))
        desk.db.expire_all()
        reference = files_of(desk.db, order)[0].reference
        r = desk.client.get(f"/api/v1/evidence/{reference}/content", headers=desk.reviewer)
        assert r.status_code == 404
        assert r.json()["code"] == "EVIDENCE_PURGED"
        assert "verdicts remain" in r.json()["detail"]
        assert audits(desk.db, "evidence.viewed") == []

    def test_review_of_a_purged_order_keeps_its_verdicts(self, desk: Desk) -> None:
        """After the purge the review still shows every verdict and score, and marks the files purged."""
        order = apply_online(desk.db, desk.settings, desk.holder, REJECTED)
        evidence.purge(desk.db, desk.settings, now=in_days(31))
        desk.db.expire_all()
        body = desk.client.get(f"/api/v1/replacements/{order.reference}/review", headers=desk.reviewer).json()
        assert {c["kind"]: c["score"] for c in body["checks"]}["face"] == 0.81
        assert [e["purged"] for e in body["evidence"]] == [True, True]

    def test_purged_upload_cannot_be_used_in_an_application(self, desk: Desk) -> None:
        """An unused upload wiped after a day is refused as EVIDENCE_PURGED: upload it again."""
        document = upload(desk.db, desk.settings, desk.holder, "document_photo", 1)
        selfie = upload(desk.db, desk.settings, desk.holder, "selfie", 2)
        evidence.purge(desk.db, desk.settings, now=utcnow() + timedelta(hours=25))
        desk.db.expire_all()
        with pytest.raises(evidence.EvidencePurged, match="upload it again"):
            evidence.for_application(
                desk.db, line_id=desk.holder.line.id, reference=document.reference, kind="document_photo"
            )
        assert count(desk.db, "replacement_orders") == 0
        assert selfie.ciphertext is None


def _commit_people(engine: Engine, settings: Settings) -> tuple[str, str]:
    """A holder and a reviewer, committed; returns the number and the reviewer's user name."""
    with make_session_factory(engine)() as session:
        holder = factories.holder(session, settings)
        reviewer = factories.staff(session, StaffRole.REVIEWER)
        session.commit()
        return holder.msisdn, reviewer.username


def _apply_and_open(client: TestClient, settings: Settings, msisdn: str, username: str) -> list[bytes]:
    """A real online application over HTTP, approved, then both files opened by a reviewer.

    Returns the distinctive pieces of the photos as uploaded and as cleaned.
    """
    headers = line_headers(client, msisdn)
    fields = online_application(
        client,
        headers,
        Path(settings.otp_outbox_dir),
        document_number=factories.DOCUMENT,
        portrait="obama.jpg",
        selfie="obama2.jpg",
    )
    r = client.post(
        "/api/v1/replacements", json={"msisdn": msisdn, "channel": "online_mail", **fields}, headers=headers
    )
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "awaiting_payment"
    reviewer = staff_headers(client, username)
    cleaned = [
        client.get(f"/api/v1/evidence/{fields[k]}/content", headers=reviewer).content
        for k in ("document_photo", "selfie")
    ]
    uploaded = [
        id_card_with_portrait(factories.DOCUMENT, photo("obama.jpg")),
        photo("obama2.jpg").read_bytes(),
    ]
    return [c for data in cleaned + uploaded for c in chunks(data)]


class TestNothingInClear:
    """After an online application, no photo byte and no ID number is stored or logged in clear."""

    def test_database_holds_no_photo_and_no_id_number(
        self, fresh: tuple[Engine, Settings], backend: str
    ) -> None:
        """Neither the database files (SQLite) nor a dump of every table made with SQL holds either."""
        engine, settings = fresh
        msisdn, username = _commit_people(engine, settings)
        with TestClient(create_app(settings)) as client:
            pieces = _apply_and_open(client, settings, msisdn, username)
        with make_session_factory(engine)() as session:
            dump = dump_tables(session)
            references = session.scalars(select(EvidenceFile.reference)).all()
        stores = [("SQL dump", dump)]
        if backend == "sqlite":
            path = Path(settings.database_url.removeprefix("sqlite:///"))
            files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-journal")) if p.exists()]
            stores.append(("database files", b"".join(p.read_bytes() for p in files)))
        assert len(references) == 2
        for name, data in stores:
            assert all(ref.encode() in data for ref in references), f"{name} lacks the evidence rows"
            assert ID_DIGITS.encode() not in data, f"{name} holds the ID number"
            leaked = [p.hex()[:16] for p in pieces if p in data or p.hex().encode() in data]
            assert leaked == [], f"{name} holds photo bytes"

    def test_logs_hold_no_photo_and_no_id_number(
        self,
        client: TestClient,
        db: Session,
        settings: Settings,
        capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Every log line of the application, the reviewer's openings and a refused attempt, at DEBUG."""
        caplog.set_level(logging.DEBUG)
        configure_logging(settings.model_copy(update={"log_level": "DEBUG", "log_json": True}))
        structlog.get_logger("simkeep.test").info("capture.canary")
        holder = factories.holder(db, settings)
        reviewer = factories.staff(db, StaffRole.REVIEWER)
        pieces = _apply_and_open(client, settings, holder.msisdn, reviewer.username)
        refused = client.post(
            "/api/v1/replacements",
            json={"msisdn": holder.msisdn, "channel": "online_mail", "document_number": factories.DOCUMENT},
            headers=line_headers(client, holder.msisdn),
        )
        assert refused.json()["code"] == "EVIDENCE_REQUIRED"
        out, err = capfd.readouterr()
        logs = "\n".join([out, err, caplog.text, *(str(r.__dict__) for r in caplog.records)])
        assert "capture.canary" in logs
        assert "HTTP Request: POST" in logs
        assert ID_DIGITS not in logs
        leaked = [p.hex()[:16] for p in pieces if any(form in logs for form in text_forms(p))]
        assert leaked == []
