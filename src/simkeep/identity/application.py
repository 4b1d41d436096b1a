"""The automatic checks of an online application: document number, OCR of the document photo, face match.

They run outside any database transaction (face matching and OCR take hundreds of milliseconds); their
outcomes are then recorded with the order. Clear passes approve, clear failures reject with a reason the
applicant can act on, and everything in between goes to a reviewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from simkeep.config import Settings
from simkeep.identity.assurance import Method
from simkeep.identity.documents import InvalidDocument, normalise_document_number
from simkeep.identity.faces import FaceVerdict, get_face_matcher
from simkeep.identity.ocr import DocumentReader

PASS, REVIEW, REJECT = "pass", "review", "reject"


@dataclass(frozen=True)
class OnlineApplication:
    """What an online applicant hands in besides the signed-in session."""

    document_number: str
    document_photo: str
    selfie: str
    one_time_code: str


@dataclass(frozen=True)
class CheckOutcome:
    """One automatic check's verdict, score and reasons."""

    kind: str  # "document" | "ocr" | "face" | "risk"
    verdict: str  # PASS | REVIEW | REJECT
    reasons: tuple[str, ...] = ()
    score: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def check_document_number(document_type: str, typed: str) -> CheckOutcome:
    """The typed number is a well-formed document number (check character, birth date, region)."""
    try:
        normalise_document_number(document_type, typed)
    except InvalidDocument as exc:
        return CheckOutcome(
            "document", REJECT, (f"document_{str(exc.details.get('reason', 'invalid')).lower()}", exc.message)
        )
    return CheckOutcome("document", PASS)


def check_document_photo(settings: Settings, *, document_type: str, typed: str, image: bytes) -> CheckOutcome:
    """Tesseract reads the number on the photo; it must be the typed one (unreadable: review)."""
    result = DocumentReader(tesseract_cmd=settings.tesseract_cmd).read(
        image, document_type=document_type, typed_number=typed
    )
    if not result.available:
        return CheckOutcome("ocr", REVIEW, ("ocr_unavailable",))
    if result.matches_typed:
        return CheckOutcome("ocr", PASS, result.reasons)
    return CheckOutcome("ocr", REVIEW, result.reasons or ("number_not_read",))


def check_face(settings: Settings, *, document_image: bytes, selfie: bytes) -> CheckOutcome:
    """The selfie's face against the document's portrait."""
    face = get_face_matcher(settings).compare(document_image, selfie)
    verdict = {FaceVerdict.ACCEPT: PASS, FaceVerdict.REVIEW: REVIEW, FaceVerdict.REJECT: REJECT}[face.verdict]
    return CheckOutcome("face", verdict, tuple(face.reasons), face.distance)


def run_checks(
    settings: Settings, *, document_type: str, typed_number: str, document_image: bytes, selfie: bytes
) -> list[CheckOutcome]:
    """Every automatic check of an online application, in order."""
    document = check_document_number(document_type, typed_number)
    if document.verdict == REJECT:
        return [document]
    return [
        document,
        check_document_photo(settings, document_type=document_type, typed=typed_number, image=document_image),
        check_face(settings, document_image=document_image, selfie=selfie),
    ]


def decide(checks: Sequence[CheckOutcome]) -> str:
    """REJECT if any check rejects, PASS if all pass, REVIEW otherwise."""
    verdicts = {c.verdict for c in checks}
    if REJECT in verdicts:
        return REJECT
    return PASS if verdicts <= {PASS} else REVIEW


def passed_methods(checks: Sequence[CheckOutcome]) -> list[str]:
    """The proof methods the checks establish: the document photo (number and OCR) and the face."""
    by_kind = {c.kind: c.verdict for c in checks}
    methods = []
    if by_kind.get("document") == PASS and by_kind.get("ocr") == PASS:
        methods.append(str(Method.DOCUMENT_PHOTO))
    if by_kind.get("face") == PASS:
        methods.append(str(Method.FACE_MATCH))
    return methods


def reasons_for_applicant(checks: Sequence[CheckOutcome]) -> str:
    """A rejection reason the applicant can act on."""
    texts = []
    for c in checks:
        if c.verdict != REJECT:
            continue
        readable = [r for r in c.reasons if " " in r]
        texts.append(readable[0] if readable else ", ".join(c.reasons))
    return "; ".join(texts) or "The automatic checks failed."
