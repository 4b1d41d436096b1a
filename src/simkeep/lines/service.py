"""Lines as the other domains see them: finding one the actor may act on."""

from __future__ import annotations

from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.identifiers import normalise_msisdn
from simkeep.identity.service import Evidence, ProofContext, assess
from simkeep.lines import repository
from simkeep.lines.errors import LineNotFound, LineRecycled
from simkeep.models import Line
from simkeep.security import hash_password


def line_for_actor(
    session: Session, *, actor: Actor, msisdn: str, for_update: bool = False, allow_recycled: bool = False
) -> Line:
    """The line with ``msisdn`` if the actor may act on it: staff on any line, a holder on their own.

    A holder asking about another line gets the same answer as for a number that does not exist.
    """
    line = repository.find_by_msisdn(session, normalise_msisdn(msisdn), for_update=for_update)
    if line is None or (not actor.is_staff and actor.line_id != line.id):
        raise LineNotFound("No such line.")
    if repository.is_recycled(line) and not allow_recycled:
        raise LineRecycled("This number was recycled.")
    return line


def reset_service_password(
    session: Session,
    settings: Settings,
    *,
    actor: Actor,
    msisdn: str,
    document_number: str,
    new_password: str,
) -> None:
    """A clerk sets a new service password after seeing the holder's document in person."""
    line = line_for_actor(session, actor=actor, msisdn=msisdn, for_update=True)
    holder = repository.holder_of(session, line)
    ctx = ProofContext(
        session=session,
        settings=settings,
        line=line,
        subscriber=holder,
        actor=actor,
        action="line.reset_password",
    )
    assess(ctx, Evidence(in_person_document_number=document_number))
    assert holder is not None
    holder.service_password_hash = hash_password(new_password)
    session.flush()
    record(
        session,
        actor=actor.label,
        action="line.service_password_set",
        subject_type="line",
        subject_id=line.id,
        data={"proof": "in_person_document"},
    )
