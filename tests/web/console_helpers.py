"""Data for the console's page tests: a store with a clerk and stock, reviewers, online orders in review."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.demo import evidence as demo_evidence
from simkeep.identity.assurance import Assurance, Method
from simkeep.identity.service import Evidence
from simkeep.models import Channel, ReplacementOrder, StaffRole
from simkeep.replacements import service as orders
from tests import factories


@dataclass
class Counter:
    """A store, its clerk, a holder and SIMs: one in this store's stock, one in another store's."""

    clerk: str
    msisdn: str
    line_id: int
    own_iccid: str
    other_iccid: str
    warehouse_iccid: str


def counter(db: Session, settings: Settings) -> Counter:
    """A clerk at a store with one blank SIM, a holder, and SIMs elsewhere."""
    shop = factories.store(db)
    other = factories.store(db)
    clerk = factories.staff(db, StaffRole.CLERK, store_row=shop)
    holder = factories.holder(db, settings)
    own = factories.sim(db, store=shop)
    foreign = factories.sim(db, store=other)
    warehouse = factories.sim(db)
    return Counter(clerk.username, holder.msisdn, holder.line.id, own.iccid, foreign.iccid, warehouse.iccid)


def line_actor(line_id: int) -> Actor:
    """The actor of a holder signed in with the service password."""
    return Actor(
        kind="line",
        label=f"line:{line_id}",
        line_id=line_id,
        assurance=Assurance.MEDIUM,
        proof_methods=(str(Method.SERVICE_PASSWORD),),
    )


@dataclass
class InReview:
    """An online order waiting for a reviewer."""

    reference: str
    msisdn: str
    real_name: str
    line_id: int


def online_in_review(db: Session, settings: Settings, *, name: str = "李娜") -> InReview:
    """A holder's online application (drawn photos, a real code) that the checks sent to review."""
    holder = factories.holder(db, settings, name=name)
    application, checks = demo_evidence.online_application(
        db, settings, holder=line_actor(holder.line.id), line=holder.line, document_number=factories.DOCUMENT
    )
    order: ReplacementOrder = orders.submit(
        db,
        settings,
        actor=line_actor(holder.line.id),
        msisdn=holder.msisdn,
        channel=Channel.ONLINE_MAIL,
        evidence=Evidence(),
        application=application,
        checks=checks,
    )
    assert order.state == "in_review", order.state
    return InReview(order.reference, holder.msisdn, name, holder.line.id)
