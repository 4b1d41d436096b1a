"""The service password (服务密码): policy, change and reset.

Passwords are argon2id hashes. A new password may not be made of the holder's birth date, digits of the
identity document or the phone number, or a trivial pattern. Changing needs the old password and the
document number; resetting a forgotten one needs a one-time code to a registered contact (never the line)
plus the document number. Every change revokes the line's sessions and tells the holder.
"""

from __future__ import annotations

import re
from contextlib import suppress
from datetime import date

from sqlalchemy import update
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import ANONYMOUS, Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput
from simkeep.identity.assurance import Method
from simkeep.identity.errors import ProofFailed, SelfServiceLocked
from simkeep.identity.otp import OtpRateLimited, send_code
from simkeep.identity.service import Evidence, ProofContext, assess
from simkeep.lines import repository as lines_repo
from simkeep.models import AuthToken, Line, ProofAttempt, Subscriber
from simkeep.notifications.service import notify
from simkeep.security import hash_password

MIN_LENGTH, MAX_LENGTH = 6, 64
SEQUENCES = "0123456789012345678909876543210"
#: This many consecutive digits of the identity document or the phone number give too much away.
RUN = 6


class WeakPassword(InvalidInput):
    """The new password is too easy to guess for someone who knows the holder."""

    code = "PASSWORD_WEAK"


def _birth_date_forms(birth: date) -> set[str]:
    y, m, d = f"{birth.year:04d}", f"{birth.month:02d}", f"{birth.day:02d}"
    return {y + m + d, y[2:] + m + d, m + d + y, d + m + y, m + d + y[2:], d + m + y[2:], y + m, m + d}


def birth_date_from_document(document_number: str | None) -> date | None:
    """The birth date inside an 18-character resident ID number, if it is one."""
    if not document_number:
        return None
    compact = "".join(document_number.split())
    if len(compact) != 18 or not compact[:17].isdigit():
        return None
    try:
        return date(int(compact[6:10]), int(compact[10:12]), int(compact[12:14]))
    except ValueError:
        return None


def _shares_run(digits: str, source: str) -> bool:
    """Whether ``digits`` contain :data:`RUN` consecutive digits of ``source`` (say, an ID's last six)."""
    source_digits = re.sub(r"\D", "", source)
    return any(source_digits[i : i + RUN] in digits for i in range(len(source_digits) - RUN + 1))


def check_policy(password: str, *, msisdn: str, document_number: str | None, birth_date: date | None) -> None:
    """Refuse passwords guessable from what is known about the holder."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(
            f"A service password has {MIN_LENGTH} to {MAX_LENGTH} characters.", reason="LENGTH"
        )
    if len(set(password)) == 1 or password in SEQUENCES:
        raise WeakPassword("Repeated or consecutive digits are too easy to guess.", reason="TRIVIAL")
    digits = re.sub(r"\D", "", password)
    birth = birth_date or birth_date_from_document(document_number)
    # Against the digits too: "31.12.1949" or "12/31/1949" is the birth date all the same.
    if birth is not None and any(
        form in password or form in digits for form in _birth_date_forms(birth) if len(form) >= 6
    ):
        raise WeakPassword("The password may not contain your birth date.", reason="BIRTH_DATE")
    if document_number:
        compact = "".join(document_number.split()).upper()
        if (len(digits) >= 4 and (digits in compact or password.upper() in compact)) or _shares_run(
            digits, compact
        ):
            raise WeakPassword(
                "The password may not be taken from your identity document.", reason="DOCUMENT"
            )
    if (len(digits) >= 4 and digits in msisdn) or _shares_run(digits, msisdn):
        raise WeakPassword("The password may not be taken from the phone number.", reason="PHONE_NUMBER")


def _set(
    session: Session,
    settings: Settings,
    *,
    line: Line,
    holder: Subscriber,
    new_password: str,
    document_number: str | None,
    actor: Actor,
    proof: str,
) -> None:
    check_policy(new_password, msisdn=line.msisdn, document_number=document_number, birth_date=None)
    holder.service_password_hash = hash_password(new_password)
    # A new password starts a new count of wrong ones: the lock of the old password does not carry over.
    session.add(
        ProofAttempt(
            line_id=line.id,
            method=str(Method.SERVICE_PASSWORD),
            action="password.set",
            passed=True,
            actor=actor.label,
            detail=proof[:300],
        )
    )
    session.execute(
        update(AuthToken)
        .where(AuthToken.line_id == line.id, AuthToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.flush()
    record(
        session,
        actor=actor.label,
        action="line.service_password_set",
        subject_type="line",
        subject_id=line.id,
        data={"proof": proof},
    )
    notify(session, settings, subscriber=holder, line=line, template="password_changed")


def change_password(
    session: Session,
    settings: Settings,
    *,
    actor: Actor,
    old_password: str,
    document_number: str,
    new_password: str,
) -> None:
    """The signed-in holder changes the password: old password plus document number."""
    line = lines_repo.get(session, actor.line_id or -1, for_update=True)
    holder = lines_repo.holder_of(session, line) if line else None
    assert line is not None
    assert holder is not None
    ctx = ProofContext(
        session=session,
        settings=settings,
        line=line,
        subscriber=holder,
        actor=actor,
        action="password.change",
    )
    assess(ctx, Evidence(service_password=old_password, document_number=document_number))
    _set(
        session,
        settings,
        line=line,
        holder=holder,
        new_password=new_password,
        document_number=document_number,
        actor=actor,
        proof="service_password+document_number",
    )


def set_in_person(
    session: Session, settings: Settings, *, actor: Actor, line: Line, document_number: str, new_password: str
) -> None:
    """A clerk sets a new password after checking the holder's document in person."""
    holder = lines_repo.holder_of(session, line)
    assert holder is not None
    ctx = ProofContext(
        session=session, settings=settings, line=line, subscriber=holder, actor=actor, action="password.reset"
    )
    assess(ctx, Evidence(in_person_document_number=document_number))
    _set(
        session,
        settings,
        line=line,
        holder=holder,
        new_password=new_password,
        document_number=document_number,
        actor=actor,
        proof="in_person_document",
    )


def _reset_context(
    session: Session, settings: Settings, msisdn: str
) -> tuple[Line | None, Subscriber | None, ProofContext]:
    """The line (a recycled one counts as unknown), its holder and the proof context of a reset."""
    line = lines_repo.find_by_msisdn(session, msisdn, for_update=True)
    if line is not None and lines_repo.is_recycled(line):
        line = None
    holder = lines_repo.holder_of(session, line) if line else None
    ctx = ProofContext(
        session=session,
        settings=settings,
        line=line,
        subscriber=holder,
        actor=ANONYMOUS,
        action="password.reset",
    )
    return line, holder, ctx


def start_reset(
    session: Session, settings: Settings, *, msisdn: str, document_number: str, channel: str
) -> None:
    """Send a reset code to a registered contact when the number and document match; else record the failure.

    The caller answers the same either way, so the reset form reveals nothing about who holds a number. A line
    whose self-service is locked, or that was sent too many codes this hour, gets no code and no refusal
    either: answering those differently would show that the number exists and the document matched.
    """
    line, holder, ctx = _reset_context(session, settings, msisdn)
    try:
        assess(ctx, Evidence(document_number=document_number))
    except SelfServiceLocked:
        return
    assert line is not None
    assert holder is not None
    with suppress(OtpRateLimited):
        send_code(session, settings, line=line, subscriber=holder, purpose="password.reset", channel=channel)


def complete_reset(
    session: Session, settings: Settings, *, msisdn: str, document_number: str, code: str, new_password: str
) -> None:
    """Set the new password when the one-time code and the document number both check out."""
    line, holder, ctx = _reset_context(session, settings, msisdn)
    assessment = assess(ctx, Evidence(document_number=document_number, one_time_code=code))
    if (
        line is None
        or holder is None
        or not {Method.ONE_TIME_CODE, Method.BIOGRAPHICAL} <= set(assessment.methods)
    ):
        raise ProofFailed("The details given do not match our records.")
    _set(
        session,
        settings,
        line=line,
        holder=holder,
        new_password=new_password,
        document_number=document_number,
        actor=Actor(kind="line", label=f"line:{line.id}", line_id=line.id),
        proof="one_time_code+document_number",
    )
