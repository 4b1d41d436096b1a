"""Replacement orders (补卡): submission, decisions, payment, SIM, delivery, activation, cancellation, expiry.

Each function is one use case; it checks the domain guards, then moves the order through
:mod:`simkeep.replacements.workflow`. The caller (request, command or job) commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import SYSTEM, Actor
from simkeep.billing import service as billing
from simkeep.config import Settings
from simkeep.db.base import hold, utcnow
from simkeep.errors import InvalidInput
from simkeep.identity.application import (
    CheckOutcome,
    OnlineApplication,
    passed_methods,
    reasons_for_applicant,
)
from simkeep.identity.application import decide as overall_verdict
from simkeep.identity.assurance import Assurance, Method, combine
from simkeep.identity.service import (
    Evidence,
    ProofContext,
    assess,
    ensure_not_locked,
    require,
    required_for,
)
from simkeep.lines import repository as lines_repo
from simkeep.lines.protection import refuse_locked_change
from simkeep.lines.service import line_for_actor
from simkeep.models import (
    Channel,
    Line,
    OrderEvent,
    OrderState,
    PaymentMethod,
    ProofAttempt,
    ReplacementOrder,
    Sim,
    SimChangeChannel,
    SimKind,
    SimLocation,
    SimStatus,
    StaffRole,
)
from simkeep.replacements import online, workflow
from simkeep.replacements.errors import (
    ActorNotAllowed,
    CooldownActive,
    OrderNotFound,
    ReplacementAlreadyOpen,
    SimChangeLocked,
)
from simkeep.security import new_reference
from simkeep.shipping import service as shipping
from simkeep.sims import service as sims_service
from simkeep.sims.errors import NoSimInStock

SIM_KIND_FOR = {
    Channel.STORE: SimKind.PHYSICAL,
    Channel.ONLINE_MAIL: SimKind.PHYSICAL,
    Channel.ESIM: SimKind.ESIM,
}
SIM_CHANGE_CHANNEL = {
    Channel.STORE: SimChangeChannel.STORE,
    Channel.ONLINE_MAIL: SimChangeChannel.ONLINE_MAIL,
    Channel.ESIM: SimChangeChannel.ESIM,
}


def _ensure_no_open_order(session: Session, line: Line) -> None:
    if session.scalar(select(ReplacementOrder.id).where(ReplacementOrder.open_line_id == line.id)):
        raise ReplacementAlreadyOpen("This line already has an open replacement order.")


def _ensure_cooldown(session: Session, settings: Settings, line: Line) -> None:
    since = utcnow() - timedelta(days=settings.online_replacement_cooldown_days)
    recent = session.scalar(
        select(func.count())
        .select_from(ReplacementOrder)
        .where(
            ReplacementOrder.line_id == line.id,
            ReplacementOrder.channel.in_(list(workflow.ONLINE_CHANNELS)),
            ReplacementOrder.created_at >= since,
            ReplacementOrder.state != OrderState.REJECTED,
        )
    )
    if recent:
        raise CooldownActive(
            f"An online replacement was made for this line in the last "
            f"{settings.online_replacement_cooldown_days} days. Visit a store, or wait.",
        )


def submit(
    session: Session,
    settings: Settings,
    *,
    actor: Actor,
    msisdn: str,
    channel: Channel,
    evidence: Evidence,
    delivery_address: dict[str, Any] | None = None,
    application: OnlineApplication | None = None,
    checks: Sequence[CheckOutcome] | None = None,
) -> ReplacementOrder:
    """Take an application, verify it, and approve it, refer it to review, or reject it.

    Online channels are for the signed-in holder, with a document photo, a selfie, the document number
    and a one-time code (``checks`` may carry the automatic checks already run outside the transaction);
    the store channel is for a clerk who checked the original document and the face in person.
    """
    if channel == Channel.STORE:
        if not actor.has_role(StaffRole.CLERK) or actor.store_id is None:
            raise ActorNotAllowed("Store replacements are made by a clerk at a store.")
        if evidence.in_person_document_number is None:
            raise ActorNotAllowed(
                "Record the in-person document check (the document number you saw).", code="PROOF_MISSING"
            )
    elif actor.kind != "line":
        raise ActorNotAllowed("Online replacements are applied for by the holder, signed in.")
    elif application is None:
        raise InvalidInput(
            "An online application needs a document photo, a selfie, the document number "
            "and a one-time code.",
            code="EVIDENCE_REQUIRED",
        )
    if application is not None:
        evidence = replace(
            evidence, document_number=application.document_number, one_time_code=application.one_time_code
        )

    line = line_for_actor(session, actor=actor, msisdn=msisdn, for_update=True)
    holder = lines_repo.holder_of(session, line)
    hold(session, line)  # the answer shows the order's number
    assert holder is not None
    ctx = ProofContext(
        session=session,
        settings=settings,
        line=line,
        subscriber=holder,
        actor=actor,
        action="replacement.submit",
    )
    # The cheap refusals come first, so that a refused application does not use up its one-time code.
    if line.sim_change_lock:
        refuse_locked_change(session, settings, actor=actor, line=line)
        raise SimChangeLocked("The SIM-change lock is on for this line; the holder must turn it off first.")
    _ensure_no_open_order(session, line)
    if channel in workflow.ONLINE_CHANNELS:
        _ensure_cooldown(session, settings, line)
    address = (
        shipping.validate_address(delivery_address or holder.delivery_address)
        if channel == Channel.ONLINE_MAIL
        else None
    )
    uploads = None
    if application is not None:  # the photos named must be the holder's, before the code is used up
        ensure_not_locked(ctx)
        uploads = online.load_uploads(session, settings, line_id=line.id, application=application)
    assessment = assess(ctx, evidence)
    require(assessment, "replacement.submit", settings)

    outcomes: list[CheckOutcome] = []
    if application is not None and uploads is not None:
        outcomes = (
            list(checks)
            if checks is not None
            else online.automatic_checks(
                settings, document_type=str(holder.document_type), application=application, uploads=uploads
            )
        )
        outcomes.append(online.risk_signals(session, settings, line=line, holder=holder, address=address))
    methods = [*assessment.methods, *passed_methods(outcomes)]

    sim_kind = SIM_KIND_FOR[channel]
    fee = billing.quote(session, settings, channel=channel, sim_kind=sim_kind)
    now = utcnow()
    order = ReplacementOrder(
        reference=new_reference("RO"),
        line_id=line.id,
        open_line_id=line.id,
        subscriber_id=line.subscriber_id,
        channel=channel,
        sim_kind=str(sim_kind),
        store_id=actor.store_id if channel == Channel.STORE else None,
        old_sim_id=line.sim_id,
        fee_amount_minor=fee.amount_minor,
        fee_currency=fee.currency,
        assurance=combine(methods).label,
        proofs=methods,
        delivery_address=address,
        created_by=actor.label,
        created_at=now,
        expires_at=now + timedelta(days=settings.activation_deadline_days),
    )
    try:
        with session.begin_nested():
            workflow.start(session, order, actor=actor)
    except IntegrityError as exc:
        raise ReplacementAlreadyOpen("This line already has an open replacement order.") from exc
    _link_proofs(session, line, order)
    if application is not None:
        online.record_checks(session, order=order, checks=outcomes, uploads=uploads, actor_label=actor.label)
    _verify(session, settings, order, combine(methods), outcomes)
    return order


def _link_proofs(session: Session, line: Line, order: ReplacementOrder) -> None:
    """Attach the proofs just recorded for this submission to the order."""
    session.execute(
        update(ProofAttempt)
        .where(
            ProofAttempt.line_id == line.id,
            ProofAttempt.order_id.is_(None),
            ProofAttempt.action == "replacement.submit",
        )
        .values(order_id=order.id)
    )


def _verify(
    session: Session,
    settings: Settings,
    order: ReplacementOrder,
    assurance: Assurance,
    checks: Sequence[CheckOutcome],
) -> None:
    """The automatic decision: clear failures are rejected, clear passes approved, the rest reviewed."""
    workflow.apply(session, order, "start_verification", actor=SYSTEM)
    verdict = overall_verdict(checks) if checks else "pass"
    if verdict == "reject":
        reason = reasons_for_applicant(checks)
        order.decision_reason = reason[:500]
        workflow.apply(session, order, "reject", actor=SYSTEM, note=reason)
    elif verdict == "pass" and assurance >= required_for(settings, "replacement.auto_approve"):
        workflow.apply(session, order, "approve", actor=SYSTEM, note=f"assurance {assurance.label}")
        _request_payment(session, order)
    else:
        reasons = sorted({r for c in checks if c.verdict == "review" for r in c.reasons})
        note = f"assurance {assurance.label}" + (f"; {', '.join(reasons)}" if reasons else "")
        workflow.apply(session, order, "refer_to_review", actor=SYSTEM, note=note[:500])


def _request_payment(session: Session, order: ReplacementOrder) -> None:
    workflow.apply(
        session,
        order,
        "request_payment",
        actor=SYSTEM,
        data={"fee_minor": order.fee_amount_minor, "currency": order.fee_currency},
    )


def get_order(
    session: Session, *, actor: Actor, reference: str, for_update: bool = False
) -> ReplacementOrder:
    """An order the actor may see: staff any (clerks those of their store or online), holders their own."""
    stmt = select(ReplacementOrder).where(ReplacementOrder.reference == reference)
    if for_update:
        stmt = stmt.with_for_update()
    order = session.scalar(stmt)
    if order is None or not _may_see(actor, order):
        raise OrderNotFound("No such order.")
    return order


def _may_see(actor: Actor, order: ReplacementOrder) -> bool:
    if actor.kind in ("system", "cli"):
        return True
    if actor.kind == "line":
        return actor.line_id == order.line_id
    if actor.role == StaffRole.CLERK:
        return order.channel != Channel.STORE or order.store_id == actor.store_id
    return actor.is_staff


def decide(session: Session, *, actor: Actor, reference: str, approve: bool, reason: str) -> ReplacementOrder:
    """A reviewer's decision on an order in review."""
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    if not reason.strip():
        raise InvalidInput("A decision needs a reason.", code="REASON_REQUIRED")
    if approve:
        workflow.apply(session, order, "approve_after_review", actor=actor, note=reason)
        order.decision_reason = reason
        order.proofs = [*order.proofs, str(Method.REVIEWER_DECISION)]
        _request_payment(session, order)
    else:
        workflow.apply(session, order, "reject", actor=actor, note=reason)
        order.decision_reason = reason
    session.flush()
    return order


def pay(
    session: Session, *, actor: Actor, reference: str, method: PaymentMethod, payment_reference: str | None
) -> ReplacementOrder:
    """Record the fee: cash at the store's counter, or an online payment's reference.

    For online orders the SIM is then taken from stock at once when one is there.
    """
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    if method == PaymentMethod.WAIVED:
        raise ActorNotAllowed("Use the waiver step to waive a fee.", code="PAYMENT_INVALID")
    if method == PaymentMethod.CASH and not actor.has_role(StaffRole.CLERK):
        raise ActorNotAllowed("Cash is taken by a clerk at a store.", code="PAYMENT_INVALID")
    workflow.apply(session, order, "record_payment", actor=actor, data={"method": str(method)})
    billing.record_charge(
        session, order=order, method=method, reference=payment_reference, recorded_by=actor.label
    )
    _assign_online(session, order)
    return order


def waive(session: Session, *, actor: Actor, reference: str, reason: str) -> ReplacementOrder:
    """Staff waive the fee, with a reason."""
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    if not reason.strip():
        raise InvalidInput("Waiving a fee needs a reason.", code="REASON_REQUIRED")
    workflow.apply(session, order, "waive_fee", actor=actor, note=reason)
    order.fee_waived = True
    billing.record_charge(
        session,
        order=order,
        method=PaymentMethod.WAIVED,
        reference=None,
        recorded_by=actor.label,
        reason=reason,
    )
    _assign_online(session, order)
    return order


def _assign_online(session: Session, order: ReplacementOrder) -> None:
    """Online orders get a SIM from the warehouse (physical) or eSIM stock when stock allows."""
    if order.channel == Channel.STORE:
        return
    try:
        with session.begin_nested():
            sim = sims_service.reserve_from_stock(
                session, kind=SimKind(order.sim_kind), location=SimLocation.WAREHOUSE
            )
    except NoSimInStock:
        record(
            session,
            actor=SYSTEM.label,
            action="replacement.waiting_for_stock",
            subject_type="replacement_order",
            subject_id=order.reference,
        )
        return
    _attach_sim(session, order, sim, SYSTEM)


def _attach_sim(session: Session, order: ReplacementOrder, sim: Sim, actor: Actor) -> None:
    order.new_sim_id = sim.id
    workflow.apply(session, order, "assign_sim", actor=actor, data={"iccid_last4": sim.iccid[-4:]})
    if order.channel == Channel.ESIM:  # the profile is ordered from the SM-DP+ by a job (docs/esim.md)
        from simkeep.esim import service as esim

        esim.request_profile(session, order=order, sim=sim)


def assign_sim(
    session: Session, *, actor: Actor, reference: str, iccid: str | None = None
) -> ReplacementOrder:
    """Give a paid order its SIM: the one a clerk scanned at the store, or one from the warehouse."""
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    if not workflow.allowed(order, "assign_sim", actor):
        workflow.apply(session, order, "assign_sim", actor=actor)  # raises the precise refusal
    if order.channel == Channel.STORE:
        if iccid is None:
            raise InvalidInput("Scan or type the new SIM's ICCID.", code="ICCID_REQUIRED")
        if order.store_id is None or (actor.store_id != order.store_id and actor.role != StaffRole.ADMIN):
            raise ActorNotAllowed("This order belongs to another store.")
        sim = sims_service.reserve_by_iccid(
            session, iccid=iccid, kind=SimKind(order.sim_kind), store_id=order.store_id
        )
    else:
        sim = sims_service.reserve_from_stock(
            session, kind=SimKind(order.sim_kind), location=SimLocation.WAREHOUSE
        )
    _attach_sim(session, order, sim, actor if actor.is_staff else SYSTEM)
    hold(session, sim)  # the answer shows the SIM
    return order


def ship(
    session: Session, settings: Settings, *, actor: Actor, reference: str, tracking_number: str | None = None
) -> ReplacementOrder:
    """The warehouse hands the SIM to the carrier: a parcel is booked (or recorded with the carrier's
    tracking number, when staff give one) with its expected delivery date."""
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    if not workflow.allowed(order, "ship", actor):
        workflow.apply(session, order, "ship", actor=actor)  # raises the precise refusal
    parcel = shipping.book_parcel(session, settings, order=order, tracking_number=tracking_number)
    workflow.apply(
        session,
        order,
        "ship",
        actor=actor,
        data={"tracking_number": parcel.tracking_number, "carrier": parcel.carrier},
    )
    order.tracking_number = parcel.tracking_number
    sim = session.get(Sim, order.new_sim_id)
    assert sim is not None
    sim.status = SimStatus.SHIPPED
    session.flush()
    return order


def reship(
    session: Session, settings: Settings, *, actor: Actor, reference: str, tracking_number: str | None = None
) -> ReplacementOrder:
    """Send an order whose parcel came back again, in a new parcel (staff, after checking the address)."""
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    if not workflow.allowed(order, "reship", actor):
        workflow.apply(session, order, "reship", actor=actor)  # raises the precise refusal
    parcel = shipping.book_parcel(session, settings, order=order, tracking_number=tracking_number)
    workflow.apply(session, order, "reship", actor=actor, data={"tracking_number": parcel.tracking_number})
    order.tracking_number = parcel.tracking_number
    session.flush()
    return order


def confirm_delivery(session: Session, *, actor: Actor, reference: str) -> ReplacementOrder:
    """Staff record a delivery the carrier did not report."""
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    workflow.apply(session, order, "confirm_delivery", actor=actor)
    return order


def record_delivery(session: Session, *, order: ReplacementOrder) -> None:
    """The carrier delivered the parcel: the order is delivered and the holder told how to activate."""
    if order.state == OrderState.SHIPPED:
        workflow.apply(session, order, "confirm_delivery", actor=SYSTEM, note="delivered by the carrier")


def hold_for_return(session: Session, *, order: ReplacementOrder, tracking_number: str) -> None:
    """The parcel came back to the warehouse: the order waits on hold for staff to reship or cancel it."""
    if order.state == OrderState.SHIPPED:
        workflow.apply(
            session,
            order,
            "hold",
            actor=SYSTEM,
            note=f"parcel {tracking_number} returned to the warehouse",
        )


def cancel(session: Session, *, actor: Actor, reference: str, reason: str) -> ReplacementOrder:
    """Cancel an open order; its SIM goes back to stock (or is retired if sent) and a refund is recorded
    when the fee was paid and the SIM never left stock."""
    order = get_order(session, actor=actor, reference=reference, for_update=True)
    if actor.role == StaffRole.CLERK and order.channel == Channel.STORE and order.store_id != actor.store_id:
        raise ActorNotAllowed("This order belongs to another store.")
    never_sent = order.state in (OrderState.PAID, OrderState.SIM_ASSIGNED)
    workflow.apply(session, order, "cancel", actor=actor, note=reason or "cancelled")
    order.decision_reason = reason or None
    _release_sim(session, order)
    if never_sent:
        refund = billing.refund_if_owed(session, order=order, recorded_by=actor.label)
        if refund is not None:
            record(
                session,
                actor=actor.label,
                action="payment.refunded",
                subject_type="replacement_order",
                subject_id=order.reference,
                data={"amount_minor": refund.amount_minor, "currency": refund.currency},
            )
    return order


def _release_sim(session: Session, order: ReplacementOrder) -> None:
    if order.new_sim_id is None:
        return
    if order.channel == Channel.ESIM:  # its profile is cancelled at the SM-DP+ by a job (docs/esim.md)
        from simkeep.esim import service as esim

        esim.close_for_order(session, order=order)
    sim = session.get(Sim, order.new_sim_id)
    assert sim is not None
    sims_service.release(session, sim)
    if sim.status == SimStatus.IN_STOCK:
        # Back in stock for the next order (new_sim_id is unique); the timeline keeps what was assigned.
        order.new_sim_id = None
        session.flush()


def expire_overdue(session: Session, *, now: datetime | None = None, limit: int = 1000) -> list[str]:
    """Expire open orders past their activation deadline and release their SIMs; returns their references."""
    now = now or utcnow()
    orders = session.scalars(
        select(ReplacementOrder)
        .where(
            ReplacementOrder.open_line_id.is_not(None),
            ReplacementOrder.expires_at < now,
            ReplacementOrder.state != OrderState.ACTIVATING,  # the number is moving: let it finish
        )
        .order_by(ReplacementOrder.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for order in orders:
        workflow.apply(
            session, order, "expire", actor=SYSTEM, note="not activated within the activation deadline"
        )
        _release_sim(session, order)
    return [o.reference for o in orders]


def timeline(session: Session, order: ReplacementOrder) -> list[OrderEvent]:
    """The order's transitions, oldest first."""
    return list(
        session.scalars(select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id))
    )


def list_orders(
    session: Session,
    *,
    actor: Actor,
    state: OrderState | None = None,
    msisdn: str | None = None,
    limit: int = 100,
) -> list[ReplacementOrder]:
    """Orders for staff (oldest first, as a queue) or a holder's own orders."""
    stmt = select(ReplacementOrder)
    if actor.kind == "line":
        stmt = stmt.where(ReplacementOrder.line_id == actor.line_id)
    elif actor.role == StaffRole.CLERK:
        stmt = stmt.where(
            (ReplacementOrder.channel != Channel.STORE) | (ReplacementOrder.store_id == actor.store_id)
        )
    if state is not None:
        stmt = stmt.where(ReplacementOrder.state == state)
    if msisdn is not None:
        line = lines_repo.find_by_msisdn(session, msisdn)
        stmt = stmt.where(ReplacementOrder.line_id == (line.id if line else -1))
    return list(session.scalars(stmt.order_by(ReplacementOrder.created_at, ReplacementOrder.id).limit(limit)))
