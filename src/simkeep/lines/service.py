"""Lines as the other domains see them: finding one the actor may act on."""

from __future__ import annotations

from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.identifiers import normalise_msisdn
from simkeep.lines import repository
from simkeep.lines.errors import LineNotFound, LineRecycled
from simkeep.models import Line


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
