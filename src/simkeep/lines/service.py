"""Lines as the other domains see them: finding one the actor may act on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
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


@dataclass(frozen=True)
class KeepAlive:
    """How long a line has before its number would be recycled for lack of chargeable activity."""

    deadline: datetime
    days_left: int
    window_days: int

    @property
    def percent_left(self) -> int:
        """The share of the window still left, 0 to 100 (for a bar)."""
        return max(0, min(100, round(100 * self.days_left / self.window_days))) if self.window_days else 0

    @property
    def band(self) -> str:
        """``ok``, ``warn`` (30 days or fewer) or ``bad`` (7 or fewer)."""
        return "bad" if self.days_left <= 7 else "warn" if self.days_left <= 30 else "ok"


def keepalive_status(line: Line, settings: Settings, *, now: datetime | None = None) -> KeepAlive:
    """Days left: the inactivity window counted from the last chargeable activity (or the activation)."""
    from sqlalchemy.orm import object_session

    from simkeep.models import Plan

    now = now or utcnow()
    session = object_session(line)
    plan = session.get(Plan, line.plan_id) if session is not None else None
    window = plan.inactivity_days if plan is not None else settings.inactivity_days_before_recycling
    since = line.last_activity_at or line.activated_at
    deadline = since + timedelta(days=window)
    days_left = max(0, (deadline - now).days)
    return KeepAlive(deadline=deadline, days_left=days_left, window_days=window)
