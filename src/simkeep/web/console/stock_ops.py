"""Moving in-stock SIMs between the warehouse and a store (sims/service.py has no transfer yet).

A transfer takes the oldest SIMs of a kind in stock at the source and moves them, only while they are still
in stock (the conditional update decides, as reservations do), and writes one audit entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.errors import InvalidInput
from simkeep.models import Sim, SimKind, SimLocation, SimStatus, Store
from simkeep.sims.errors import NoSimInStock
from simkeep.sims.service import stock_pick

MAX_TRANSFER = 10_000


@dataclass(frozen=True)
class Place:
    """The warehouse (store None) or a store."""

    store: Store | None

    @property
    def location(self) -> SimLocation:
        """The SIM location this place is."""
        return SimLocation.WAREHOUSE if self.store is None else SimLocation.STORE

    @property
    def label(self) -> str:
        """``warehouse`` or the store's code."""
        return "warehouse" if self.store is None else self.store.code


def transfer_stock(
    session: Session, *, actor: Actor, kind: SimKind, source: Place, target: Place, quantity: int
) -> int:
    """Move ``quantity`` in-stock SIMs of ``kind`` from ``source`` to ``target``; returns how many moved."""
    if source.label == target.label:
        raise InvalidInput("Choose two different places.", code="TRANSFER_SAME_PLACE", field="target")
    if not 1 <= quantity <= MAX_TRANSFER:
        raise InvalidInput(
            f"Move 1 to {MAX_TRANSFER} SIMs at a time.", code="TRANSFER_QUANTITY", field="quantity"
        )
    source_store = source.store.id if source.store else None
    ids = list(session.scalars(stock_pick(kind, source.location, source_store).limit(quantity)))
    if len(ids) < quantity:
        raise NoSimInStock(
            f"Only {len(ids)} {kind} SIMs are in stock at {source.label}.",
            field="quantity",
            available=len(ids),
        )
    result = session.execute(
        update(Sim)
        .where(Sim.id.in_(ids), Sim.status == SimStatus.IN_STOCK)
        .values(location=target.location, store_id=target.store.id if target.store else None)
        .execution_options(synchronize_session=False)
    )
    moved = int(result.rowcount or 0)  # type: ignore[attr-defined]  # CursorResult of an UPDATE
    if moved < quantity:
        raise NoSimInStock("Some of those SIMs were just taken; try again.", field="quantity")
    record(
        session,
        actor=actor.label,
        action="sims.transferred",
        subject_type="stock",
        subject_id=target.label,
        data={"from": source.label, "to": target.label, "kind": str(kind), "quantity": moved},
    )
    return moved
