"""JSON API of SIM stock (staff)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import func, select

from simkeep.auth.deps import DbSession, StaffActor
from simkeep.models import Sim, SimStatus, StaffRole
from simkeep.models.sims import is_stock
from simkeep.routing import OneTripRoute

router = APIRouter(route_class=OneTripRoute, tags=["sims"])


class StockCount(BaseModel):
    """How many SIMs of a kind are in stock at a place."""

    location: str
    store_id: int | None
    kind: str
    in_stock: int


@router.get("/stock", response_model=list[StockCount])
def stock(session: DbSession, actor: StaffActor) -> list[StockCount]:
    """SIMs in stock by place and kind; clerks see their own store's."""
    stmt = (
        select(Sim.location, Sim.store_id, Sim.kind, func.count())
        .where(is_stock(), Sim.status == SimStatus.IN_STOCK)
        .group_by(Sim.location, Sim.store_id, Sim.kind)
        .order_by(Sim.location, Sim.store_id, Sim.kind)
    )
    if actor.role == StaffRole.CLERK:
        stmt = stmt.where(Sim.store_id == actor.store_id)
    return [
        StockCount(location=str(loc), store_id=store, kind=str(kind), in_stock=int(n))
        for loc, store, kind, n in session.execute(stmt)
    ]
