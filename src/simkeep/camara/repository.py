"""Queries of the CAMARA domain: relying-party clients, recorded queries, numbers and their history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from simkeep.models import ApiQuery, Line, NumberRecycling, RelyingParty, SimChange


def client_by_client_id(session: Session, client_id: str) -> RelyingParty | None:
    """The client with this public id, if any."""
    return session.scalars(select(RelyingParty).where(RelyingParty.client_id == client_id)).one_or_none()


def all_clients(session: Session) -> Sequence[RelyingParty]:
    """Every client, oldest first."""
    return session.scalars(select(RelyingParty).order_by(RelyingParty.id)).all()


def answered_since(session: Session, client_pk: int, since: datetime) -> int:
    """Queries of one client answered (not refused for rate or quota) since ``since``."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(ApiQuery)
            .where(ApiQuery.client_id == client_pk, ApiQuery.asked_at >= since, ApiQuery.status != 429)
        )
        or 0
    )


def insert_queries(session: Session, rows: list[dict[str, object]]) -> None:
    """Write recorded queries in one statement."""
    if rows:
        session.execute(insert(ApiQuery), rows)


def line_by_msisdn(session: Session, msisdn: str) -> Line | None:
    """The line that holds this number now, if any."""
    return session.scalars(select(Line).where(Line.msisdn == msisdn)).one_or_none()


def recyclings_of(session: Session, msisdn: str) -> Sequence[NumberRecycling]:
    """Recyclings of a number that were not undone."""
    return session.scalars(
        select(NumberRecycling).where(NumberRecycling.msisdn == msisdn, NumberRecycling.undone_at.is_(None))
    ).all()


def latest_sim_change(session: Session, line_id: int) -> datetime | None:
    """When the number of this line last moved to a SIM, if ever."""
    return session.scalar(select(func.max(SimChange.changed_at)).where(SimChange.line_id == line_id))
