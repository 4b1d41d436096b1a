"""Activating the new SIM: the number moves and the old SIM dies in one step, with the SIM-change record."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import SYSTEM, Actor
from simkeep.config import Settings
from simkeep.db.base import hold, utcnow
from simkeep.identity.assurance import Method
from simkeep.identity.service import Evidence, ProofContext, alert_on_lock, assess, require
from simkeep.lines import repository as lines_repo
from simkeep.lines.errors import LineRecycled
from simkeep.lines.protection import refuse_locked_change
from simkeep.loss import service as loss_service
from simkeep.models import (
    Channel,
    Line,
    LineStatus,
    NetworkOperation,
    NetworkOpKind,
    OrderState,
    ProofAttempt,
    ReplacementOrder,
    Sim,
    SimChange,
    SimStatus,
    StaffRole,
)
from simkeep.network import operations
from simkeep.network.operations import is_transactional
from simkeep.replacements import workflow
from simkeep.replacements.errors import ActorNotAllowed, IccidMismatch, SimChangeLocked
from simkeep.replacements.service import SIM_CHANGE_CHANNEL, get_order
from simkeep.security import constant_time_equal

ICCID_DIGITS = 6


def activate(
    session: Session,
    settings: Settings,
    *,
    actor: Actor,
    reference: str,
    iccid_digits: str | None = None,
) -> ReplacementOrder:
    """Move the number to the new SIM and retire the old one in one step, and record the SIM change.

    The holder proves receipt with the last digits of the new SIM's ICCID (and their signed-in session);
    at a store the clerk activates. Every change, the network's included, happens in the caller's
    transaction: if any step fails nothing is kept, the old SIM goes on working and the order can be
    activated again.
    """
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    by_system = workflow.role_of(actor) == workflow.SYSTEM
    if order.channel == Channel.ONLINE_MAIL:
        name = "activate_delivered"
    elif order.channel == Channel.ESIM and by_system:
        name = "activate_installed"  # the SM-DP+ reported the profile installed
    else:
        name = "activate"
    if not workflow.allowed(order, name, actor):
        workflow.apply(session, order, name, actor=actor)  # raises the precise refusal
    line = lines_repo.get(session, order.line_id, for_update=True)
    assert line is not None
    if line.status == LineStatus.RECYCLED:
        raise LineRecycled("This number was recycled.")
    if line.sim_change_lock:
        refuse_locked_change(session, settings, actor=actor, line=line)
        raise SimChangeLocked("The SIM-change lock is on for this line; the holder must turn it off first.")
    new_sim = session.get(Sim, order.new_sim_id)
    assert new_sim is not None
    hold(session, line, new_sim)  # the answer shows the number and the SIM
    if order.channel == Channel.STORE:
        if order.store_id != actor.store_id and actor.role != StaffRole.ADMIN:
            raise ActorNotAllowed("This order belongs to another store.")
    elif order.channel == Channel.ESIM:
        # The profile's state is the proof of receipt (installed on the holder's device, or released and
        # confirmed by the holder, as the operator configures); a person activating must be signed in.
        from simkeep.esim.service import check_activation_allowed

        check_activation_allowed(session, settings, order=order, actor=actor)
        if not by_system:
            _check_receipt(session, settings, actor=actor, line=line, order=order, new_sim=new_sim)
    else:
        _check_receipt(
            session, settings, actor=actor, line=line, order=order, new_sim=new_sim, iccid_digits=iccid_digits
        )

    old_sim = lines_repo.current_sim(session, line)
    if is_transactional(session, settings):
        # The embedded HLR: the move and simkeep's record commit (or roll back) together.
        _schedule_move(
            session, settings, order=order, line=line, old_sim=old_sim, new_sim=new_sim, actor=actor
        )
        _record_activation(session, settings, order=order, line=line, old_sim=old_sim, actor=actor, name=name)
        return order
    # An external HLR: the order waits in "activating" until the network has moved the number.
    start = "start_activation_delivered" if order.channel == Channel.ONLINE_MAIL else "start_activation"
    workflow.apply(session, order, start, actor=actor)
    _schedule_move(session, settings, order=order, line=line, old_sim=old_sim, new_sim=new_sim, actor=actor)
    return order


def _schedule_move(
    session: Session,
    settings: Settings,
    *,
    order: ReplacementOrder,
    line: Line,
    old_sim: Sim | None,
    new_sim: Sim,
    actor: Actor,
) -> None:
    operations.schedule(
        session,
        settings,
        kind=NetworkOpKind.MOVE,
        line_id=line.id,
        order_id=order.id,
        msisdn=line.msisdn,
        old_imsi=old_sim.imsi if old_sim else None,
        new_imsi=new_sim.imsi,
        actor=actor.label,
    )


def complete_activation(session: Session, settings: Settings | None, *, op: NetworkOperation) -> None:
    """The network has moved the number: record the SIM change and activate the order (once)."""
    order = session.get(ReplacementOrder, op.order_id, with_for_update=True) if op.order_id else None
    if order is None or order.state != OrderState.ACTIVATING:
        return  # the embedded HLR's move: activate() records it in the same transaction
    line = lines_repo.get(session, order.line_id, for_update=True)
    assert line is not None
    old_sim = (
        session.get(Sim, order.old_sim_id) if order.old_sim_id else lines_repo.current_sim(session, line)
    )
    if old_sim is not None and old_sim.imsi != op.old_imsi:
        old_sim = session.scalar(select(Sim).where(Sim.imsi == op.old_imsi)) if op.old_imsi else None
    _record_activation(
        session, settings, order=order, line=line, old_sim=old_sim, actor=SYSTEM, name="complete_activation"
    )


def abandon_activation(session: Session, *, op: NetworkOperation) -> None:
    """The network refused the move (and it was undone): the order goes back for staff to look at."""
    order = session.get(ReplacementOrder, op.order_id, with_for_update=True) if op.order_id else None
    if order is None or order.state != OrderState.ACTIVATING:
        return
    name = "activation_failed_delivered" if order.channel == Channel.ONLINE_MAIL else "activation_failed"
    workflow.apply(
        session, order, name, actor=SYSTEM, note=f"the network refused the move: {op.last_error or ''}"[:500]
    )


def _record_activation(
    session: Session,
    settings: Settings | None,
    *,
    order: ReplacementOrder,
    line: Line,
    old_sim: Sim | None,
    actor: Actor,
    name: str,
) -> None:
    new_sim = session.get(Sim, order.new_sim_id)
    assert new_sim is not None
    now = utcnow()
    if old_sim is not None:
        old_sim.status = SimStatus.RETIRED
    line.sim_id = new_sim.id
    new_sim.status = SimStatus.ACTIVE
    line.status = LineStatus.ACTIVE
    line.suspension_reason = None
    loss_service.close_for_replacement(session, line=line, actor=actor)
    session.add(
        SimChange(
            line_id=line.id,
            old_sim_id=old_sim.id if old_sim else None,
            new_sim_id=new_sim.id,
            changed_at=now,
            channel=SIM_CHANGE_CHANNEL[order.channel],
            order_id=order.id,
        )
    )
    order.activated_at = now
    workflow.apply(
        session,
        order,
        name,
        actor=actor,
        data={
            "old_iccid_last4": old_sim.iccid[-4:] if old_sim else None,
            "new_iccid_last4": new_sim.iccid[-4:],
        },
    )
    _after_sim_change(session, settings, line=line, old_sim=old_sim, changed_at=now)


def _after_sim_change(
    session: Session, settings: Settings | None, *, line: Line, old_sim: Sim | None, changed_at: datetime
) -> None:
    """Tell subscribed relying parties, and remove the old SIM from the HLR once its grace has passed."""
    from simkeep.camara.subscriptions import on_sim_change

    on_sim_change(session, line_id=line.id, msisdn=line.msisdn, changed_at=changed_at)
    if old_sim is not None:
        grace = settings.hlr_old_sim_grace_days if settings is not None else 7
        operations.schedule(
            session,
            settings,
            kind=NetworkOpKind.REMOVE,
            line_id=line.id,
            old_imsi=old_sim.imsi,
            not_before=changed_at + timedelta(days=grace),
        )


def _check_receipt(
    session: Session,
    settings: Settings,
    *,
    actor: Actor,
    line: Line,
    order: ReplacementOrder,
    new_sim: Sim,
    iccid_digits: str | None = None,
) -> None:
    """The activating person's session is strong enough; with ``iccid_digits`` (a mailed SIM), they match."""
    holder = lines_repo.holder_of(session, line)
    ctx = ProofContext(
        session=session,
        settings=settings,
        line=line,
        subscriber=holder,
        actor=actor,
        action="replacement.activate",
    )
    require(assess(ctx, Evidence(), order_id=order.id), "replacement.activate", settings)
    if order.channel != Channel.ONLINE_MAIL:
        return
    given = (iccid_digits or "").strip()
    ok = constant_time_equal(given, new_sim.iccid[-ICCID_DIGITS:])
    session.add(
        ProofAttempt(
            line_id=line.id,
            order_id=order.id,
            method=str(Method.ICCID_DIGITS),
            action="replacement.activate",
            passed=ok,
            actor=actor.label,
            detail="" if ok else "ICCID digits do not match",
        )
    )
    session.flush()
    if not ok:
        alert_on_lock(ctx, [str(Method.ICCID_DIGITS)])
        record(
            session,
            actor=actor.label,
            action="proof.failed",
            subject_type="line",
            subject_id=line.id,
            data={"methods": [str(Method.ICCID_DIGITS)], "for": "replacement.activate"},
        )
        raise IccidMismatch(f"Give the last {ICCID_DIGITS} digits of the ICCID printed on the new SIM.")
