"""What a holder does to protect the line: the SIM-change lock and the registered contacts."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput
from simkeep.identifiers import normalise_msisdn
from simkeep.identity.service import Evidence, ProofContext, assess, require
from simkeep.lines import repository
from simkeep.lines.service import line_for_actor
from simkeep.models import Line, Subscriber
from simkeep.notifications.service import notify


def set_sim_change_lock(
    session: Session, settings: Settings, *, actor: Actor, msisdn: str, on: bool, evidence: Evidence
) -> Line:
    """Turn the SIM-change lock on (any signed-in session) or off (high assurance), and tell the holder."""
    line = line_for_actor(session, actor=actor, msisdn=msisdn, for_update=True)
    holder = repository.holder_of(session, line)
    assert holder is not None
    action = "lock.on" if on else "lock.off"
    ctx = ProofContext(
        session=session, settings=settings, line=line, subscriber=holder, actor=actor, action=action
    )
    assessment = assess(ctx, evidence)
    require(assessment, action, settings)
    if line.sim_change_lock == on:
        return line
    line.sim_change_lock = on
    session.flush()
    record(
        session,
        actor=actor.label,
        action=f"line.{action.replace('.', '_')}",
        subject_type="line",
        subject_id=line.id,
        data={"proof": list(assessment.methods)},
    )
    notify(
        session,
        settings,
        subscriber=holder,
        line=line,
        template="lock_changed",
        state="on" if on else "off",
        state_zh="开启" if on else "关闭",
    )
    return line


def refuse_locked_change(session: Session, settings: Settings, *, actor: Actor, line: Line) -> None:
    """Audit a SIM change refused by the lock and alert the holder (the caller then raises)."""
    record(
        session,
        actor=actor.label,
        action="replacement.refused_locked",
        subject_type="line",
        subject_id=line.id,
    )
    holder = repository.holder_of(session, line)
    if holder is not None:
        notify(session, settings, subscriber=holder, line=line, template="sim_change_blocked")


def change_contacts(
    session: Session,
    settings: Settings,
    *,
    actor: Actor,
    msisdn: str,
    contact_email: str | None,
    contact_phone: str | None,
    evidence: Evidence,
    delivery_address: dict[str, Any] | None = None,
) -> Subscriber:
    """Change the registered contacts (high assurance); the old contacts are told. One must remain."""
    line = line_for_actor(session, actor=actor, msisdn=msisdn, for_update=True)
    holder = repository.holder_of(session, line)
    assert holder is not None
    ctx = ProofContext(
        session=session, settings=settings, line=line, subscriber=holder, actor=actor, action="contact.change"
    )
    require(assess(ctx, evidence), "contact.change", settings)
    phone = normalise_msisdn(contact_phone) if contact_phone else None
    if phone is not None and phone == line.msisdn:
        raise InvalidInput("The contact phone must be another number than this line.", code="CONTACT_IS_LINE")
    if contact_email is not None and ("@" not in contact_email or len(contact_email) > 254):
        raise InvalidInput("That is not an e-mail address.", code="CONTACT_INVALID")
    # With no contact left the holder could get no code and no alert (of a SIM-change attempt, say) at all.
    if contact_email is None and phone is None:
        raise InvalidInput(
            "Keep at least one registered contact (an e-mail address or another phone number).",
            code="CONTACT_REQUIRED",
        )
    # Tell the old contacts first, so a hijacker cannot silence the holder by replacing them.
    notify(session, settings, subscriber=holder, line=line, template="contacts_changed")
    holder.contact_email = contact_email
    holder.contact_phone = phone
    if delivery_address is not None:
        holder.delivery_address = delivery_address
    holder.contact_changed_at = utcnow()
    session.flush()
    record(
        session,
        actor=actor.label,
        action="line.contacts_changed",
        subject_type="line",
        subject_id=line.id,
        data={"proof": "high"},
    )
    return holder
