"""One-time codes: six random digits to a registered contact, never to the line being changed.

A code is stored only as an HMAC, is valid for five minutes, works once, and locks after five wrong tries.
Sending is rate-limited per line. A code is bound to its purpose (the action it authorises), so a code
asked for one action is worthless for another.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import DomainError, InvalidInput
from simkeep.models import Line, OneTimeCode, Subscriber
from simkeep.notifications.service import contacts, deliver, mask_destination
from simkeep.security import constant_time_equal, keyed_hash

PURPOSES = frozenset(
    {
        "replacement.submit",
        "loss.reinstate",
        "lock.off",
        "contact.change",
        "password.reset",
        "portal.sign_in",
    }
)
#: Purposes a signed-in holder may ask a code for (a reset and the portal's sign-in come before one).
SESSION_PURPOSES = PURPOSES - {"password.reset", "portal.sign_in"}


class OtpRateLimited(DomainError):
    """Too many codes were sent for this line recently."""

    code = "OTP_RATE_LIMITED"


class OtpNoContact(InvalidInput):
    """The holder has no registered contact on that channel (other than the line itself)."""

    code = "OTP_NO_CONTACT"


def _hash(settings: Settings, line_id: int, purpose: str, code: str) -> str:
    return keyed_hash(settings.secret_key, f"{line_id}:{purpose}:{code}", purpose="one-time-code")


def send_code(
    session: Session, settings: Settings, *, line: Line, subscriber: Subscriber, purpose: str, channel: str
) -> OneTimeCode:
    """Make a new code for ``purpose``, retire earlier unused ones, and send it to the chosen contact."""
    row, _code = issue_code(
        session, settings, line=line, subscriber=subscriber, purpose=purpose, channel=channel
    )
    return row


def issue_code(
    session: Session, settings: Settings, *, line: Line, subscriber: Subscriber, purpose: str, channel: str
) -> tuple[OneTimeCode, str]:
    """:func:`send_code`, also handing back the code itself (for the demo loader, which plays the holder)."""
    if purpose not in PURPOSES:
        raise InvalidInput(f"Unknown purpose {purpose!r}.", code="OTP_PURPOSE_INVALID")
    address = contacts(subscriber, line).get(channel)
    if address is None:
        raise OtpNoContact("There is no registered contact of that kind (the number itself never counts).")
    now = utcnow()
    sent_last_hour = session.scalar(
        select(func.count())
        .select_from(OneTimeCode)
        .where(OneTimeCode.line_id == line.id, OneTimeCode.created_at >= now - timedelta(hours=1))
    )
    if (sent_last_hour or 0) >= settings.otp_sends_per_hour:
        raise OtpRateLimited("Too many codes were sent for this number; try again in an hour.")
    session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.line_id == line.id,
            OneTimeCode.purpose == purpose,
            OneTimeCode.consumed_at.is_(None),
            OneTimeCode.locked_at.is_(None),
        )
        .values(locked_at=now)
        .execution_options(synchronize_session=False)
    )
    code = f"{secrets.randbelow(1_000_000):06d}"
    row = OneTimeCode(
        line_id=line.id,
        purpose=purpose,
        channel=channel,
        destination_masked=mask_destination(channel, address),
        code_hmac=_hash(settings, line.id, purpose, code),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.otp_ttl_seconds),
    )
    session.add(row)
    session.flush()
    deliver(
        session,
        settings,
        subscriber=subscriber,
        line=line,
        channel=channel,
        address=address,
        template="otp",
        params={"code": code, "minutes": max(1, settings.otp_ttl_seconds // 60)},
    )
    record(
        session,
        actor=f"line:{line.id}",
        action="otp.sent",
        subject_type="line",
        subject_id=line.id,
        data={"purpose": purpose, "channel": channel, "to": row.destination_masked},
    )
    return row, code


def check_code(session: Session, settings: Settings, *, line: Line, purpose: str, code: str) -> bool:
    """Whether ``code`` is the live code for ``purpose``; uses it up on success, counts a try otherwise."""
    now = utcnow()
    row = session.scalar(
        select(OneTimeCode)
        .where(
            OneTimeCode.line_id == line.id,
            OneTimeCode.purpose == purpose,
            OneTimeCode.consumed_at.is_(None),
            OneTimeCode.locked_at.is_(None),
        )
        .order_by(OneTimeCode.id.desc())
        .limit(1)
        .with_for_update()
    )
    candidate = _hash(settings, line.id, purpose, code.strip())
    if row is None or row.expires_at <= now:
        constant_time_equal(candidate, "0" * 64)
        return False
    row.attempts += 1
    if constant_time_equal(candidate, row.code_hmac):
        row.consumed_at = now
        session.flush()
        return True
    if row.attempts >= settings.otp_max_attempts:
        row.locked_at = now
    session.flush()
    return False


def latest_destination(session: Session, *, line_id: int, purpose: str) -> str:
    """Where the newest code for ``purpose`` went, masked ("" when none was sent)."""
    return (
        session.scalar(
            select(OneTimeCode.destination_masked)
            .where(OneTimeCode.line_id == line_id, OneTimeCode.purpose == purpose)
            .order_by(OneTimeCode.id.desc())
            .limit(1)
        )
        or ""
    )
