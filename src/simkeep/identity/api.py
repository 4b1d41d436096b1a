"""JSON API of identity proofs: uploads, one-time codes, the service password."""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession, LineActor, require_staff
from simkeep.identifiers import normalise_msisdn
from simkeep.identity import evidence as evidence_service
from simkeep.identity import otp, passwords
from simkeep.identity.errors import ProofFailed
from simkeep.lines import repository as lines_repo
from simkeep.models import StaffRole
from simkeep.routing import OneTripRoute

router = APIRouter(route_class=OneTripRoute, tags=["identity"])
Reviewer = Annotated[Actor, Depends(require_staff(StaffRole.REVIEWER))]


class UploadRead(BaseModel):
    """An accepted upload: cleaned (EXIF and GPS removed), encrypted, ready to name in an application."""

    reference: str
    kind: str
    content_type: str
    size_bytes: int


class CodeRequest(BaseModel):
    """Which action the code is for, and where to send it."""

    model_config = ConfigDict(extra="forbid")

    purpose: Literal["replacement.submit", "loss.reinstate", "lock.off", "contact.change"]
    channel: Literal["email", "sms"]


class CodeSent(BaseModel):
    """Where the code went (masked) and until when it works."""

    sent_to: str
    channel: str
    expires_at: datetime


class PasswordChange(BaseModel):
    """The old password, the document number and the new password."""

    model_config = ConfigDict(extra="forbid")

    old_password: str = Field(min_length=1, max_length=64)
    document_number: str = Field(min_length=5, max_length=32)
    new_password: str = Field(min_length=1, max_length=64)


class ResetStart(BaseModel):
    """Forgot the service password: the number, the document number, and a registered contact to use."""

    model_config = ConfigDict(extra="forbid")

    msisdn: str = Field(min_length=1, max_length=32)
    document_number: str = Field(min_length=5, max_length=32)
    channel: Literal["email", "sms"]


class ResetComplete(BaseModel):
    """The code received, with the document number again and the new password."""

    model_config = ConfigDict(extra="forbid")

    msisdn: str = Field(min_length=1, max_length=32)
    document_number: str = Field(min_length=5, max_length=32)
    one_time_code: str = Field(pattern=r"^[0-9]{6}$")
    new_password: str = Field(min_length=1, max_length=64)


class Accepted(BaseModel):
    """A request taken, with what happens next."""

    message: str


@router.post("/evidence", response_model=UploadRead, status_code=201)
def upload(
    session: DbSession,
    settings: AppSettings,
    actor: LineActor,
    kind: Annotated[Literal["document_photo", "selfie"], Form()],
    file: Annotated[UploadFile, File(description="JPEG, PNG or WebP, at most 10 MB.")],
) -> UploadRead:
    """Upload a document photo or a selfie for an application (the signed-in holder)."""
    data = file.file.read(settings.upload_max_bytes + 1)
    row = evidence_service.store_upload(
        session, settings, actor=actor, kind=kind, data=data, declared_type=file.content_type
    )
    session.commit()
    return UploadRead(
        reference=row.reference, kind=row.kind, content_type=row.content_type, size_bytes=row.size_bytes
    )


@router.get(
    "/evidence/{reference}/content", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}}
)
def evidence_content(reference: str, session: DbSession, settings: AppSettings, actor: Reviewer) -> Response:
    """A reviewer opens an evidence image; every opening is audited."""
    row, plain = evidence_service.view(session, settings, actor=actor, reference=reference)
    session.commit()
    return Response(
        plain,
        media_type=row.content_type,
        headers={"cache-control": "no-store", "x-content-type-options": "nosniff"},
    )


@router.post("/one-time-codes", response_model=CodeSent, status_code=201)
def send_code(body: CodeRequest, session: DbSession, settings: AppSettings, actor: LineActor) -> CodeSent:
    """Send a one-time code for an action to a registered contact (never to the line itself)."""
    line = lines_repo.get(session, actor.line_id or -1, for_update=True)
    holder = lines_repo.holder_of(session, line) if line else None
    assert line is not None
    assert holder is not None
    row = otp.send_code(
        session, settings, line=line, subscriber=holder, purpose=body.purpose, channel=body.channel
    )
    session.commit()
    return CodeSent(sent_to=row.destination_masked, channel=row.channel, expires_at=row.expires_at)


@router.post("/auth/password", status_code=204)
def change_password(
    body: PasswordChange, session: DbSession, settings: AppSettings, actor: LineActor
) -> None:
    """Change the service password (signed in): old password and document number; all sessions end."""
    passwords.change_password(
        session,
        settings,
        actor=actor,
        old_password=body.old_password,
        document_number=body.document_number,
        new_password=body.new_password,
    )
    session.commit()


@router.post("/auth/password-reset", response_model=Accepted, status_code=202)
def start_reset(body: ResetStart, session: DbSession, settings: AppSettings) -> Accepted:
    """Forgot the password: if the details match, a code goes to the chosen registered contact.

    The answer is the same whether or not they match, so the form tells nobody who holds a number.
    """
    with suppress(ProofFailed, otp.OtpNoContact):
        passwords.start_reset(
            session,
            settings,
            msisdn=normalise_msisdn(body.msisdn),
            document_number=body.document_number,
            channel=body.channel,
        )
    session.commit()
    return Accepted(
        message="If the details match our records, a code is on its way to your registered contact."
    )


@router.post("/auth/password-reset/complete", status_code=204)
def complete_reset(body: ResetComplete, session: DbSession, settings: AppSettings) -> None:
    """Set a new service password with the code received and the document number."""
    passwords.complete_reset(
        session,
        settings,
        msisdn=normalise_msisdn(body.msisdn),
        document_number=body.document_number,
        code=body.one_time_code,
        new_password=body.new_password,
    )
    session.commit()
