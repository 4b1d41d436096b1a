"""The online application's evidence, automatic checks and risk signals, as the order records them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import DomainError
from simkeep.identity.application import REJECT, REVIEW, CheckOutcome, OnlineApplication, run_checks
from simkeep.identity.evidence import decrypt, for_application
from simkeep.identity.service import recent_failures
from simkeep.models import EvidenceFile, IdentityCheck, Line, ProofAttempt, ReplacementOrder, Subscriber

CONTACT_CHANGE_RISK_DAYS = 7
APPLICATIONS_PER_ADDRESS = 3


@dataclass(frozen=True)
class Uploads:
    """The two evidence files of an application, and their plaintext images."""

    document_photo: EvidenceFile
    selfie: EvidenceFile
    document_image: bytes
    selfie_image: bytes


def load_uploads(
    session: Session, settings: Settings, *, line_id: int, application: OnlineApplication
) -> Uploads:
    """The holder's two unused uploads named by the application, decrypted."""
    document = for_application(
        session, line_id=line_id, reference=application.document_photo, kind="document_photo"
    )
    selfie = for_application(session, line_id=line_id, reference=application.selfie, kind="selfie")
    return Uploads(document, selfie, decrypt(settings, document), decrypt(settings, selfie))


def automatic_checks(
    settings: Settings, *, document_type: str, application: OnlineApplication, uploads: Uploads
) -> list[CheckOutcome]:
    """Document number, OCR and face match (slow: run them outside a write transaction when possible)."""
    return run_checks(
        settings,
        document_type=document_type,
        typed_number=application.document_number,
        document_image=uploads.document_image,
        selfie=uploads.selfie_image,
    )


def checks_outside_transaction(
    session: Session, settings: Settings, *, line_id: int, application: OnlineApplication
) -> list[CheckOutcome] | None:
    """Run the slow checks (OCR, face match) with no transaction open, for :func:`submit` to record.

    Reads the holder's document type and the named uploads, then rolls back, so nothing is held while the
    checks run. None when the uploads cannot be had: the service then refuses in its own order of checks.
    """
    try:
        line = session.get(Line, line_id)
        holder = session.get(Subscriber, line.subscriber_id) if line else None
        if holder is None:
            return None
        document_type = str(holder.document_type)
        uploads = load_uploads(session, settings, line_id=line_id, application=application)
    except DomainError:
        return None
    finally:
        session.rollback()
    return automatic_checks(settings, document_type=document_type, application=application, uploads=uploads)


def risk_signals(
    session: Session, settings: Settings, *, line: Line, holder: Subscriber, address: dict[str, str] | None
) -> CheckOutcome:
    """Signs that send an otherwise clean application to a person."""
    now = utcnow()
    reasons = []
    if holder.contact_changed_at and holder.contact_changed_at > now - timedelta(
        days=CONTACT_CHANGE_RISK_DAYS
    ):
        reasons.append("contact_changed_recently")
    if recent_failures(session, settings, line.id) > 0:
        reasons.append("recent_failed_proofs")
    if address is not None:
        key = "|".join(address.get(f, "").casefold() for f in ("region", "city", "street"))
        recent = session.scalars(
            select(ReplacementOrder.delivery_address)
            .where(
                ReplacementOrder.created_at >= now - timedelta(days=30),
                ReplacementOrder.delivery_address.is_not(None),
                ReplacementOrder.line_id != line.id,
            )
            .limit(5000)
        ).all()
        same = sum(
            1
            for a in recent
            if a and "|".join(str(a.get(f, "")).casefold() for f in ("region", "city", "street")) == key
        )
        if same + 1 >= APPLICATIONS_PER_ADDRESS:
            reasons.append("many_applications_from_address")
    return CheckOutcome("risk", REVIEW if reasons else "pass", tuple(reasons))


#: The proof method a rejecting check failed (a rejection counts towards the line's lock like a wrong code).
FAILED_METHOD = {"document": "document_photo", "ocr": "document_photo", "face": "face_match"}


def record_checks(
    session: Session,
    *,
    order: ReplacementOrder,
    checks: Sequence[CheckOutcome],
    uploads: Uploads | None,
    actor_label: str,
) -> None:
    """Keep each verdict with the order, tie the evidence files to it; rejections count as failed proofs."""
    for c in checks:
        if c.verdict == REJECT and c.kind in FAILED_METHOD:
            session.add(
                ProofAttempt(
                    line_id=order.line_id,
                    order_id=order.id,
                    method=FAILED_METHOD[c.kind],
                    action="replacement.submit",
                    passed=False,
                    actor=actor_label,
                    detail=", ".join(r for r in c.reasons if " " not in r)[:200],
                )
            )
        session.add(
            IdentityCheck(
                order_id=order.id,
                kind=c.kind,
                verdict=c.verdict,
                score=c.score,
                reasons=list(c.reasons),
                detail=dict(c.detail),
            )
        )
    if uploads is not None:
        uploads.document_photo.order_id = order.id
        uploads.selfie.order_id = order.id
    session.flush()


def checks_of(session: Session, order: ReplacementOrder) -> list[IdentityCheck]:
    """An order's recorded verdicts."""
    return list(
        session.scalars(
            select(IdentityCheck).where(IdentityCheck.order_id == order.id).order_by(IdentityCheck.id)
        )
    )


def evidence_of(session: Session, order: ReplacementOrder) -> list[EvidenceFile]:
    """An order's evidence files (purged ones included, without their bytes)."""
    return list(
        session.scalars(
            select(EvidenceFile).where(EvidenceFile.order_id == order.id).order_by(EvidenceFile.id)
        )
    )


def count_checks(session: Session, order: ReplacementOrder) -> int:
    """How many verdicts an order has."""
    return int(
        session.scalar(
            select(func.count()).select_from(IdentityCheck).where(IdentityCheck.order_id == order.id)
        )
        or 0
    )
