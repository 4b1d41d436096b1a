"""A store replacement order ready to activate, for tests that need a real SIM change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.models import SimChange
from tests import factories


def store_order(s: Session, settings: Settings) -> tuple[Actor, str, str, int]:
    """A line in service for years and a paid store order with its new SIM assigned, ready to activate."""
    ready = factories.ready_store_order(s, settings)
    long_ago = datetime.now(UTC) - timedelta(days=400)
    ready.holder.line.activated_at = long_ago
    for change in s.scalars(select(SimChange).where(SimChange.line_id == ready.holder.line.id)):
        change.changed_at = long_ago
    s.commit()
    return ready.clerk, ready.reference, ready.holder.msisdn, ready.holder.line.id
