"""The invariants of lines, SIMs, replacement orders, the embedded HLR and the audit chain.

Each check reads the database afresh and returns a list of violations (empty when everything holds), so a
failing property names every broken rule at once. They hold for the whole database, which in the property
tests is the test's own rolled-back transaction.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.audit.service import verify_chain
from simkeep.models import (
    EmbeddedHlrSubscriber,
    Line,
    LineStatus,
    OrderState,
    ReplacementOrder,
    Sim,
    SimChange,
    SimStatus,
)
from simkeep.network.adapter import BARRED, LIVE

#: SIM states in which a SIM serves (or, suspended, could serve again) a number.
LIVE_SIM_STATES = frozenset({SimStatus.ACTIVE, SimStatus.SUSPENDED})
#: SIM states of a SIM set aside for an open order.
HELD_SIM_STATES = frozenset({SimStatus.RESERVED, SimStatus.SHIPPED})


def sim_violations(session: Session) -> list[str]:
    """Live lines have exactly their one live SIM; no live SIM is without a line or on two lines."""
    problems: list[str] = []
    lines = list(session.scalars(select(Line).order_by(Line.id)))
    sims = {s.id: s for s in session.scalars(select(Sim))}
    on_lines = Counter(line.sim_id for line in lines if line.sim_id is not None)
    for sim_id, n in on_lines.items():
        if n > 1:
            problems.append(f"SIM {sim_id} is the current SIM of {n} lines")
    for line in lines:
        if line.status == LineStatus.RECYCLED:
            continue
        if line.sim_id is None:
            problems.append(f"live line {line.id} ({line.status}) has no SIM")
            continue
        sim = sims[line.sim_id]
        expected = SimStatus.ACTIVE if line.status == LineStatus.ACTIVE else SimStatus.SUSPENDED
        if sim.status != expected:
            problems.append(f"line {line.id} is {line.status} but its SIM {sim.id} is {sim.status}")
    for sim in sims.values():
        if sim.status in LIVE_SIM_STATES and on_lines[sim.id] != 1:
            problems.append(
                f"SIM {sim.id} is {sim.status} but is the current SIM of {on_lines[sim.id]} lines"
            )
    # A SIM ever given a number went to one line only.
    lines_of_sim: dict[int, set[int]] = defaultdict(set)
    for change in session.scalars(select(SimChange)):
        lines_of_sim[change.new_sim_id].add(change.line_id)
    for sim_id, line_ids in lines_of_sim.items():
        if len(line_ids) > 1:
            problems.append(f"SIM {sim_id} was given to lines {sorted(line_ids)}")
    return problems


def order_violations(session: Session) -> list[str]:
    """Activated orders have exactly one SIM-change record; open orders hold their SIM, closed ones none."""
    problems: list[str] = []
    orders = list(session.scalars(select(ReplacementOrder).order_by(ReplacementOrder.id)))
    changes_by_order: dict[int, list[SimChange]] = defaultdict(list)
    latest_by_line: dict[int, SimChange] = {}
    for change in session.scalars(select(SimChange).order_by(SimChange.changed_at, SimChange.id)):
        if change.order_id is not None:
            changes_by_order[change.order_id].append(change)
        latest_by_line[change.line_id] = change
    for order in orders:
        problems.extend(_sim_change_mismatch(order, changes_by_order.get(order.id, [])))
        problems.extend(_open_mismatch(order))
    problems.extend(_held_sim_mismatch(session, orders))
    for line in session.scalars(select(Line)):
        latest = latest_by_line.get(line.id)
        if line.status != LineStatus.RECYCLED and (latest is None or latest.new_sim_id != line.sim_id):
            problems.append(f"line {line.id}'s latest SIM-change record does not name its current SIM")
    return problems


def _sim_change_mismatch(order: ReplacementOrder, changes: list[SimChange]) -> list[str]:
    """An activated order has exactly one SIM-change record, for its SIM and line; no other order has one."""
    if order.state != OrderState.ACTIVATED:
        return [f"order {order.reference} in state {order.state} has a SIM-change record"] if changes else []
    if len(changes) != 1:
        return [f"activated order {order.reference} has {len(changes)} SIM-change records"]
    problems = []
    if changes[0].new_sim_id != order.new_sim_id or changes[0].line_id != order.line_id:
        problems.append(f"order {order.reference}'s SIM-change record names another SIM or line")
    if order.activated_at is None:
        problems.append(f"activated order {order.reference} has no activation time")
    return problems


def _open_mismatch(order: ReplacementOrder) -> list[str]:
    """An order is open (holds its line) exactly while it is in an open state."""
    if (order.open_line_id is not None) == (order.state not in _TERMINAL):
        return []
    return [f"order {order.reference} in state {order.state} has open_line_id {order.open_line_id}"]


def _held_sim_mismatch(session: Session, orders: list[ReplacementOrder]) -> list[str]:
    """Every reserved or shipped SIM is held by exactly one open order, and an open order's SIM is such."""
    problems = []
    sims = {s.id: s for s in session.scalars(select(Sim))}
    held_by_open: Counter[int] = Counter()
    for order in orders:
        if order.new_sim_id is None or order.open_line_id is None:
            continue
        held_by_open[order.new_sim_id] += 1
        sim = sims[order.new_sim_id]
        if sim.status not in HELD_SIM_STATES:
            problems.append(f"open order {order.reference} holds SIM {sim.id} in state {sim.status}")
    for sim in sims.values():
        if sim.status in HELD_SIM_STATES and held_by_open[sim.id] != 1:
            problems.append(f"SIM {sim.id} is {sim.status} but held by {held_by_open[sim.id]} open orders")
    return problems


_TERMINAL = frozenset({OrderState.ACTIVATED, OrderState.REJECTED, OrderState.CANCELLED, OrderState.EXPIRED})


def hlr_violations(session: Session) -> list[str]:
    """The embedded HLR serves each live number on its current SIM's IMSI only, barred unless active."""
    problems: list[str] = []
    entries = {e.imsi: e for e in session.scalars(select(EmbeddedHlrSubscriber))}
    by_msisdn: dict[str, list[str]] = defaultdict(list)
    for entry in entries.values():
        if entry.msisdn is not None:
            by_msisdn[entry.msisdn].append(entry.imsi)
    sims = {s.id: s for s in session.scalars(select(Sim))}
    for line in session.scalars(select(Line)):
        if line.status == LineStatus.RECYCLED or line.sim_id is None:
            continue
        imsi = sims[line.sim_id].imsi
        holders = by_msisdn.get(line.msisdn, [])
        if holders != [imsi]:
            problems.append(f"line {line.id}'s number is on IMSIs {holders} in the HLR, not only on {imsi}")
            continue
        mode = entries[imsi].network_access_mode
        wanted = LIVE if line.status == LineStatus.ACTIVE else BARRED
        if mode != wanted:
            problems.append(f"line {line.id} is {line.status} but its IMSI's access mode is {mode!r}")
    for sim in sims.values():
        known = entries.get(sim.imsi)
        if sim.status == SimStatus.RETIRED and known is not None and known.network_access_mode != BARRED:
            problems.append(f"retired SIM {sim.id} is not barred in the HLR")
    return problems


def audit_violations(session: Session) -> list[str]:
    """The audit log's hash chain checks out from the first entry to the last."""
    report = verify_chain(session)
    return [] if report.ok else [f"audit chain broken at entry {report.first_broken_id}: {report.problem}"]


def all_violations(session: Session) -> list[str]:
    """Every broken invariant, read afresh from the database."""
    session.expire_all()
    return [
        *sim_violations(session),
        *order_violations(session),
        *hlr_violations(session),
        *audit_violations(session),
    ]
