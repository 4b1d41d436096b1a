"""SIM stock: reserving a SIM for an order atomically, and giving it back."""

from __future__ import annotations

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from simkeep.identifiers import normalise_iccid
from simkeep.models import Sim, SimKind, SimLocation, SimStatus
from simkeep.models.sims import is_stock
from simkeep.sims.errors import NoSimInStock, SimNotAvailable

_PICK_ATTEMPTS = 20


def stock_pick(kind: SimKind, location: SimLocation, store_id: int | None) -> Select[int]:
    """The ids of the SIMs in stock of ``kind`` at a place (the warehouse, or the store ``store_id``),
    oldest first, rows locked and locked ones skipped: add the ``limit``.

    It reads ``ix_sims_stock_pick`` (status, kind, location, store_id, id; the SIMs that are stock, whose
    predicate the statement names, see :func:`simkeep.models.sims.is_stock`) from the place's first entry.
    The store is matched as a range of one value and the rows are ordered by store, then id: with an
    equality PostgreSQL would count the store as fixed and see the primary key's order as the one asked for,
    and walk the primary key from the oldest SIM, on the assumption that SIMs in stock are spread evenly over
    the ids. Stock is used oldest first, so it would pass over every used SIM (0.4-0.6 s a pick with
    500,000 used of 1,000,000, migration 0017).
    """
    place = Sim.store_id.is_(None) if store_id is None else Sim.store_id.between(store_id, store_id)
    return (
        select(Sim.id)
        .where(is_stock(), Sim.status == SimStatus.IN_STOCK)
        .where(Sim.kind == kind, Sim.location == location, place)
        .order_by(Sim.store_id, Sim.id)
        .with_for_update(skip_locked=True)
    )


def _claim(session: Session, sim_id: int) -> bool:
    """Move one SIM from stock to reserved if it is still in stock; the database decides who wins."""
    result = session.execute(
        update(Sim)
        .where(Sim.id == sim_id, Sim.status == SimStatus.IN_STOCK)
        .values(status=SimStatus.RESERVED)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult of an UPDATE


def reserve_from_stock(
    session: Session, *, kind: SimKind, location: SimLocation, store_id: int | None = None
) -> Sim:
    """Reserve the oldest SIM of ``kind`` in stock at ``location``; each SIM goes to one order only.

    On PostgreSQL concurrent callers skip each other's locked rows; on SQLite writes are serial. Either
    way the conditional update is the final arbiter.
    """
    for _ in range(_PICK_ATTEMPTS):
        stmt = stock_pick(kind, location, store_id).limit(1)
        sim_id = session.scalar(stmt)
        if sim_id is None:
            break
        if _claim(session, sim_id):
            sim = session.get(Sim, sim_id, populate_existing=True)
            assert sim is not None
            return sim
    raise NoSimInStock(f"No {kind} SIM is in stock at the {location}.")


def reserve_by_iccid(session: Session, *, iccid: str, kind: SimKind, store_id: int) -> Sim:
    """Reserve the SIM a clerk scanned: it must be in this store's stock and of the right kind."""
    sim = session.scalar(select(Sim).where(Sim.iccid == normalise_iccid(iccid)).with_for_update())
    if (
        sim is None
        or sim.status != SimStatus.IN_STOCK
        or sim.location != SimLocation.STORE
        or sim.store_id != store_id
        or sim.kind != kind
    ):
        raise SimNotAvailable(f"That SIM is not an unused {kind} SIM in this store's stock.")
    if not _claim(session, sim.id):
        raise SimNotAvailable("That SIM was just taken by another order.")
    # What the claim wrote, without reading the row again: its status, and a time read when next asked.
    set_committed_value(sim, "status", SimStatus.RESERVED)
    session.expire(sim, ["updated_at"])
    return sim


def release(session: Session, sim: Sim) -> None:
    """Give back a SIM an order no longer needs: back to stock if it never left, else retired."""
    if sim.status == SimStatus.RESERVED:
        sim.status = SimStatus.IN_STOCK
    elif sim.status == SimStatus.SHIPPED:
        sim.status = SimStatus.RETIRED
    session.flush()
