"""Document photos and selfies: upload, encryption at rest, audited viewing, purge after retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput, NotFound
from simkeep.identity.assurance import Method
from simkeep.identity.images import sanitize_upload
from simkeep.identity.vault import Sealed, get_vault
from simkeep.models import EvidenceFile, ProofAttempt, ReplacementOrder, StaffRole
from simkeep.security import new_reference

KINDS = ("document_photo", "selfie")
ORPHAN_HOURS = 24
#: The proof an upload stands for in an application, as recorded when it is refused.
PROOF_METHOD = {"document_photo": Method.DOCUMENT_PHOTO, "selfie": Method.FACE_MATCH}


class EvidenceNotFound(NotFound):
    """No such evidence file, or not one the caller may use or see."""

    code = "EVIDENCE_NOT_FOUND"


class EvidencePurged(NotFound):
    """The file was deleted after its retention period; only the verdicts remain."""

    code = "EVIDENCE_PURGED"


class UploadRefused(EvidenceNotFound):
    """An application named an upload that is not the applicant's, of another kind, or already used.

    It is a failed proof: recorded, audited and counted toward the self-service lock, so it is kept.
    """

    keep_changes = True


class UploadExpired(EvidencePurged):
    """An application named an unused upload past its lifetime (purged or due to be); a failed proof."""

    keep_changes = True


def store_upload(
    session: Session, settings: Settings, *, actor: Actor, kind: str, data: bytes, declared_type: str | None
) -> EvidenceFile:
    """Check and clean an uploaded photo (EXIF and GPS stripped), encrypt it, and keep it for the holder."""
    if kind not in KINDS:
        raise InvalidInput(f"An upload is one of: {', '.join(KINDS)}.", code="EVIDENCE_KIND_INVALID")
    if actor.kind != "line" or actor.line_id is None:
        raise InvalidInput("Photos are uploaded by the signed-in holder.", code="LINE_SIGN_IN_REQUIRED")
    clean = sanitize_upload(
        data,
        declared_type=declared_type,
        max_bytes=settings.upload_max_bytes,
        max_pixels=settings.upload_max_pixels,
    )
    reference = new_reference("EV")
    sealed = get_vault(settings).seal(clean.data, reference=reference)
    row = EvidenceFile(
        reference=reference,
        line_id=actor.line_id,
        kind=kind,
        content_type=clean.content_type,
        size_bytes=len(clean.data),
        key_id=sealed.key_id,
        nonce=sealed.nonce,
        ciphertext=sealed.ciphertext,
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor.label,
        action="evidence.uploaded",
        subject_type="line",
        subject_id=actor.line_id,
        data={"evidence": reference, "kind": kind, "bytes": len(clean.data)},
    )
    return row


def for_application(session: Session, *, line_id: int, reference: str, kind: str) -> EvidenceFile:
    """An unused upload of the holder's own, of the expected kind, not older than ``ORPHAN_HOURS``.

    Anything else is refused and recorded as a failed proof of the line (uploads are named only in the
    holder's own online applications): another holder's upload, one already used, a guessed reference.
    """
    row = session.scalar(select(EvidenceFile).where(EvidenceFile.reference == reference).with_for_update())
    if row is None or row.line_id != line_id or row.kind != kind or row.order_id is not None:
        _record_refusal(session, line_id=line_id, kind=kind, detail="upload not the holder's or already used")
        raise UploadRefused(f"No unused {kind.replace('_', ' ')} with that reference; upload it again.")
    expired = row.uploaded_at < utcnow() - timedelta(hours=ORPHAN_HOURS)
    if row.ciphertext is None or expired:
        _record_refusal(session, line_id=line_id, kind=kind, detail="upload expired")
        raise UploadExpired("That upload has expired; upload it again.")
    return row


def _record_refusal(session: Session, *, line_id: int, kind: str, detail: str) -> None:
    """Record a refused upload as a failed proof of the application, and audit it."""
    method = str(PROOF_METHOD.get(kind, kind))
    actor = f"line:{line_id}"
    session.add(
        ProofAttempt(
            line_id=line_id,
            method=method,
            action="replacement.submit",
            passed=False,
            actor=actor,
            detail=detail,
        )
    )
    session.flush()
    record(
        session,
        actor=actor,
        action="proof.failed",
        subject_type="line",
        subject_id=line_id,
        data={"methods": [method], "for": "replacement.submit"},
    )


def decrypt(settings: Settings, row: EvidenceFile) -> bytes:
    """The plaintext image of an evidence file."""
    if row.ciphertext is None or row.nonce is None:
        raise EvidencePurged("This file was deleted after its retention period; its verdicts remain.")
    return get_vault(settings).open(Sealed(row.key_id, row.nonce, row.ciphertext), reference=row.reference)


def view(session: Session, settings: Settings, *, actor: Actor, reference: str) -> tuple[EvidenceFile, bytes]:
    """A reviewer (or admin) opens a file; every opening is audited."""
    if not actor.has_role(StaffRole.REVIEWER):
        raise EvidenceNotFound("No such evidence file.")
    row = session.scalar(select(EvidenceFile).where(EvidenceFile.reference == reference))
    if row is None:
        raise EvidenceNotFound("No such evidence file.")
    plain = decrypt(settings, row)
    order = session.get(ReplacementOrder, row.order_id) if row.order_id else None
    record(
        session,
        actor=actor.label,
        action="evidence.viewed",
        subject_type="replacement_order",
        subject_id=order.reference if order else "none",
        data={"evidence": reference, "kind": row.kind},
    )
    return row, plain


@dataclass(frozen=True)
class PurgeReport:
    """What a purge run deleted."""

    closed_orders: int
    orphans: int


def purge(session: Session, settings: Settings, *, now: datetime | None = None) -> PurgeReport:
    """Delete photos of orders closed longer than the retention period, and unused uploads after a day.

    Only the encrypted bytes go; the rows, and the verdicts and scores in ``identity_checks``, stay.
    """
    now = now or utcnow()
    closed_before = now - timedelta(days=settings.evidence_retention_days)
    closed_ids = select(ReplacementOrder.id).where(
        ReplacementOrder.closed_at.is_not(None), ReplacementOrder.closed_at < closed_before
    )
    wipe = {"ciphertext": None, "nonce": None, "purged_at": now}
    closed = session.execute(
        update(EvidenceFile)
        .where(EvidenceFile.purged_at.is_(None), EvidenceFile.order_id.in_(closed_ids))
        .values(**wipe)
        .execution_options(synchronize_session=False)
    )
    orphans = session.execute(
        update(EvidenceFile)
        .where(
            EvidenceFile.purged_at.is_(None),
            EvidenceFile.order_id.is_(None),
            EvidenceFile.uploaded_at < now - timedelta(hours=ORPHAN_HOURS),
        )
        .values(**wipe)
        .execution_options(synchronize_session=False)
    )
    report = PurgeReport(int(closed.rowcount or 0), int(orphans.rowcount or 0))  # type: ignore[attr-defined]
    if report.closed_orders or report.orphans:
        record(
            session,
            actor="system",
            action="evidence.purged",
            subject_type="system",
            subject_id="evidence",
            data={"closed_orders": report.closed_orders, "orphans": report.orphans},
        )
    return report
