"""Queries about lines and their holders."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.models import Line, LineStatus, Sim, SimChange, Subscriber


def find_by_msisdn(session: Session, msisdn: str, *, for_update: bool = False) -> Line | None:
    """The line with this number, optionally locked for the rest of the transaction."""
    stmt = select(Line).where(Line.msisdn == msisdn)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def get(session: Session, line_id: int, *, for_update: bool = False) -> Line | None:
    """The line with this id, optionally locked."""
    stmt = select(Line).where(Line.id == line_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def holder_of(session: Session, line: Line) -> Subscriber | None:
    """The line's registered holder."""
    return session.get(Subscriber, line.subscriber_id)


def current_sim(session: Session, line: Line) -> Sim | None:
    """The SIM now serving the line."""
    return session.get(Sim, line.sim_id) if line.sim_id else None


def is_recycled(line: Line) -> bool:
    """Whether the number was taken back."""
    return line.status == LineStatus.RECYCLED


def sim_changes(session: Session, line_id: int) -> list[SimChange]:
    """The line's SIM changes, newest first."""
    return list(
        session.scalars(
            select(SimChange).where(SimChange.line_id == line_id).order_by(SimChange.changed_at.desc())
        )
    )


def lock(session: Session, line: Line) -> Line:
    """Lock the line's row for the rest of the transaction (a no-op on SQLite, whose writes are serial)."""
    locked = get(session, line.id, for_update=True)
    assert locked is not None
    return locked
