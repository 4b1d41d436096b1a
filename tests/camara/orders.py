"""A store replacement order ready to activate, for tests that need a real SIM change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.identity.service import Evidence
from simkeep.models import Channel, PaymentMethod, SimChange, StaffRole
from simkeep.replacements import service
from tests import factories


def store_order(s: Session, settings: Settings) -> tuple[Actor, str, str, int]:
    """A line in service for years and a paid store order with its new SIM assigned, ready to activate."""
    store = factories.store(s)
    clerk_row = factories.staff(s, StaffRole.CLERK, store_row=store)
    clerk = Actor(
        kind="staff",
        label=f"staff:{clerk_row.username}",
        staff_user_id=clerk_row.id,
        role=StaffRole.CLERK,
        store_id=store.id,
    )
    new_sim = factories.sim(s, store=store)
    holder = factories.holder(s, settings)
    long_ago = datetime.now(UTC) - timedelta(days=400)
    holder.line.activated_at = long_ago
    for change in s.scalars(select(SimChange).where(SimChange.line_id == holder.line.id)):
        change.changed_at = long_ago
    order = service.submit(
        s,
        settings,
        actor=clerk,
        msisdn=holder.msisdn,
        channel=Channel.STORE,
        evidence=Evidence(in_person_document_number=factories.DOCUMENT),
    )
    service.pay(s, actor=clerk, reference=order.reference, method=PaymentMethod.CASH, payment_reference=None)
    service.assign_sim(s, actor=clerk, reference=order.reference, iccid=new_sim.iccid)
    s.commit()
    return clerk, order.reference, holder.msisdn, holder.line.id
