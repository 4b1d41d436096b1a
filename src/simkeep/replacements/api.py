"""JSON API of replacement orders and the fee schedule."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession, SignedInActor, StaffActor, require_staff
from simkeep.billing import service as billing
from simkeep.errors import InvalidInput
from simkeep.identifiers import normalise_msisdn
from simkeep.identity.application import OnlineApplication
from simkeep.identity.service import Evidence, recent_failures
from simkeep.masking import mask_iccid
from simkeep.models import (
    Channel,
    Line,
    OrderState,
    PaymentMethod,
    ReplacementOrder,
    Sim,
    StaffRole,
)
from simkeep.network.operations import commit_and_apply
from simkeep.replacements import activation, online, service, workflow
from simkeep.replacements.schemas import (
    Activation,
    Decision,
    EvidenceRead,
    ExpiryRun,
    Fee,
    FeeRead,
    FeeSet,
    IdentityCheckRead,
    OrderEventRead,
    PaymentCreate,
    Reason,
    ReplacementCreate,
    ReplacementRead,
    ReviewRead,
    Shipment,
    SimAssignment,
)
from simkeep.routing import OneTripRoute

router = APIRouter(route_class=OneTripRoute, tags=["replacements"])
Reviewer = Annotated[Actor, Depends(require_staff(StaffRole.REVIEWER))]
Admin = Annotated[Actor, Depends(require_staff(StaffRole.ADMIN))]
OrderRef = Annotated[str, Query(min_length=1, max_length=16)]


def _fee(amount_minor: int, currency: str) -> Fee:
    return Fee(amount_minor=amount_minor, currency=currency, display=f"{amount_minor / 100:.2f} {currency}")


def _view_rows(session: Session, order: ReplacementOrder) -> tuple[Line, Sim | None]:
    line = session.get(Line, order.line_id)
    assert line is not None
    return line, session.get(Sim, order.new_sim_id) if order.new_sim_id else None


def to_read(
    session: Session, order: ReplacementOrder, *, line: Line | None = None, sim: Sim | None = None
) -> ReplacementRead:
    """The API view of an order (``line`` and ``sim``: its rows, when the caller holds them)."""
    if line is None:
        line, sim = _view_rows(session, order)
    return ReplacementRead(
        reference=order.reference,
        msisdn=line.msisdn,
        channel=order.channel,
        sim_kind=order.sim_kind,
        state=order.state,
        fee=_fee(order.fee_amount_minor, order.fee_currency),
        fee_waived=order.fee_waived,
        assurance=order.assurance,
        proofs=list(order.proofs),
        delivery_address=order.delivery_address,
        tracking_number=order.tracking_number,
        new_sim_iccid=mask_iccid(sim.iccid) if sim else None,
        decision_reason=order.decision_reason,
        created_at=order.created_at,
        expires_at=order.expires_at,
        activated_at=order.activated_at,
        closed_at=order.closed_at,
        next_steps=workflow.next_steps(order),
    )


def committed(session: Session, order: ReplacementOrder) -> ReplacementRead:
    """Commit, and the order's view as committed. The view is read in the transaction: read after it, the
    line and the SIM would open a second one, which on SQLite queues for the write lock once more."""
    read = to_read(session, order)
    session.commit()
    return read


@router.get("/fees", response_model=list[FeeRead])
def list_fees(session: DbSession, settings: AppSettings) -> list[FeeRead]:
    """The replacement fee per channel, shown before anything is paid."""
    return [
        FeeRead(channel=q.channel, sim_kind=q.sim_kind, fee=_fee(q.amount_minor, q.currency))
        for q in billing.schedule(session, settings)
    ]


@router.put("/fees/{channel}", response_model=FeeRead)
def set_fee(channel: Channel, body: FeeSet, session: DbSession, actor: Admin) -> FeeRead:
    """Set a channel's fee (admins)."""
    kind = service.SIM_KIND_FOR[channel]
    fee = billing.set_fee(
        session, channel=channel, sim_kind=kind, amount_minor=body.amount_minor, currency=body.currency
    )
    record(
        session,
        actor=actor.label,
        action="fee.set",
        subject_type="fee",
        subject_id=str(channel),
        data={"amount_minor": body.amount_minor, "currency": fee.currency},
    )
    session.commit()
    return FeeRead(channel=fee.channel, sim_kind=fee.sim_kind, fee=_fee(fee.amount_minor, fee.currency))


@router.post("/replacements", response_model=ReplacementRead, status_code=201)
def submit(
    body: ReplacementCreate, session: DbSession, settings: AppSettings, actor: SignedInActor
) -> ReplacementRead:
    """Apply for a replacement SIM: online by the signed-in holder, or at a store by a clerk.

    Online, name the uploaded document photo and selfie (``POST /api/v1/evidence``), give the document number
    and the one-time code sent for ``replacement.submit``. The face match and the document reading run
    before the order's transaction opens, so they never hold the database.
    """
    evidence = Evidence(
        service_password=body.service_password, in_person_document_number=body.in_person_document_number
    )
    application = _application(body)
    checks = None
    if application is not None and actor.kind == "line" and actor.line_id is not None:
        checks = online.checks_outside_transaction(
            session, settings, line_id=actor.line_id, application=application
        )
    order = service.submit(
        session,
        settings,
        actor=actor,
        msisdn=normalise_msisdn(body.msisdn),
        channel=body.channel,
        evidence=evidence,
        delivery_address=body.delivery_address.model_dump() if body.delivery_address else None,
        application=application,
        checks=checks,
    )
    return committed(session, order)


def _application(body: ReplacementCreate) -> OnlineApplication | None:
    fields = (body.document_number, body.document_photo, body.selfie, body.one_time_code)
    if body.channel == Channel.STORE or not any(fields):
        return None
    if not all(fields):
        raise InvalidInput(
            "An online application needs document_number, document_photo, selfie and one_time_code.",
            code="EVIDENCE_REQUIRED",
        )
    return OnlineApplication(
        str(body.document_number), str(body.document_photo), str(body.selfie), str(body.one_time_code)
    )


@router.get("/replacements", response_model=list[ReplacementRead])
def list_replacements(
    session: DbSession,
    actor: SignedInActor,
    state: OrderState | None = None,
    msisdn: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ReplacementRead]:
    """Orders, oldest first: staff see their queue (filter by state), holders their own."""
    number = normalise_msisdn(msisdn) if msisdn else None
    orders = service.list_orders(session, actor=actor, state=state, msisdn=number, limit=limit)
    return [to_read(session, o) for o in orders]


@router.get("/replacements/{reference}", response_model=ReplacementRead)
def get_replacement(reference: str, session: DbSession, actor: SignedInActor) -> ReplacementRead:
    """One order."""
    return to_read(session, service.get_order(session, actor=actor, reference=reference))


@router.get("/replacements/{reference}/timeline", response_model=list[OrderEventRead])
def get_timeline(reference: str, session: DbSession, actor: SignedInActor) -> list[OrderEventRead]:
    """The order's steps, oldest first."""
    order = service.get_order(session, actor=actor, reference=reference)
    return [
        OrderEventRead(
            transition=e.transition,
            from_state=e.from_state,
            to_state=e.to_state,
            actor=e.actor if actor.is_staff else e.actor.split(":")[0],
            note=e.note,
            at=e.at,
        )
        for e in service.timeline(session, order)
    ]


@router.post("/replacements/{reference}/decision", response_model=ReplacementRead)
def decide(reference: str, body: Decision, session: DbSession, actor: Reviewer) -> ReplacementRead:
    """Approve or reject an order in review (reviewers)."""
    order = service.decide(
        session, actor=actor, reference=reference, approve=body.approve, reason=body.reason
    )
    return committed(session, order)


@router.post("/replacements/{reference}/payment", response_model=ReplacementRead)
def pay(reference: str, body: PaymentCreate, session: DbSession, actor: SignedInActor) -> ReplacementRead:
    """Record the fee: cash at the counter (clerk) or an online payment's reference (holder)."""
    order = service.pay(
        session,
        actor=actor,
        reference=reference,
        method=PaymentMethod(body.method),
        payment_reference=body.payment_reference,
    )
    return committed(session, order)


@router.post("/replacements/{reference}/fee-waiver", response_model=ReplacementRead)
def waive(reference: str, body: Reason, session: DbSession, actor: StaffActor) -> ReplacementRead:
    """Waive the fee, with a reason (staff)."""
    order = service.waive(session, actor=actor, reference=reference, reason=body.reason)
    return committed(session, order)


@router.post("/replacements/{reference}/sim", response_model=ReplacementRead)
def assign_sim(reference: str, body: SimAssignment, session: DbSession, actor: StaffActor) -> ReplacementRead:
    """Give the paid order its SIM: the scanned one at a store, else one from the warehouse (staff)."""
    order = service.assign_sim(session, actor=actor, reference=reference, iccid=body.iccid)
    return committed(session, order)


@router.post("/replacements/{reference}/shipment", response_model=ReplacementRead)
def ship(
    reference: str, body: Shipment, session: DbSession, settings: AppSettings, actor: Admin
) -> ReplacementRead:
    """The SIM leaves the warehouse: the configured carrier books the parcel, or give the tracking number of
    one booked outside simkeep (admins). The parcel's journey: ``GET .../parcels``."""
    order = service.ship(
        session, settings, actor=actor, reference=reference, tracking_number=body.tracking_number
    )
    return committed(session, order)


@router.post("/replacements/{reference}/reshipment", response_model=ReplacementRead)
def reship(
    reference: str, body: Shipment, session: DbSession, settings: AppSettings, actor: Admin
) -> ReplacementRead:
    """Send an order on hold (its parcel came back) again in a new parcel (admins)."""
    order = service.reship(
        session, settings, actor=actor, reference=reference, tracking_number=body.tracking_number
    )
    return committed(session, order)


@router.post("/replacements/{reference}/delivery", response_model=ReplacementRead)
def deliver(reference: str, session: DbSession, actor: Admin) -> ReplacementRead:
    """Record a delivery the carrier did not report (admins; carriers report it by webhook)."""
    order = service.confirm_delivery(session, actor=actor, reference=reference)
    return committed(session, order)


@router.post("/replacements/{reference}/activation", response_model=ReplacementRead)
def activate(
    reference: str, body: Activation, session: DbSession, settings: AppSettings, actor: SignedInActor
) -> ReplacementRead:
    """Activate the new SIM: the number moves to it and the old SIM stops working, in one step."""
    order = activation.activate(
        session, settings, actor=actor, reference=reference, iccid_digits=body.iccid_last_digits
    )
    # The view's line and SIM, loaded in the transaction: read after the network's steps, they would open
    # a transaction of their own (the session keeps an object only while something refers to it).
    line, sim = _view_rows(session, order)
    commit_and_apply(session, settings)
    return to_read(session, order, line=line, sim=sim)


@router.post("/replacements/{reference}/cancellation", response_model=ReplacementRead)
def cancel(reference: str, body: Reason, session: DbSession, actor: SignedInActor) -> ReplacementRead:
    """Cancel an open order; a refund is recorded when one is owed."""
    order = service.cancel(session, actor=actor, reference=reference, reason=body.reason)
    return committed(session, order)


@router.post("/replacements:expire", response_model=ExpiryRun)
def expire(session: DbSession, actor: Admin) -> ExpiryRun:
    """Expire orders past their activation deadline now (admins; `simkeep orders expire` does the same)."""
    expired = service.expire_overdue(session)
    record(
        session,
        actor=actor.label,
        action="replacement.expiry_run",
        subject_type="system",
        subject_id="expiry",
        data={"expired": len(expired)},
    )
    session.commit()
    return ExpiryRun(expired=expired)


@router.get("/replacements/{reference}/review", response_model=ReviewRead)
def review(reference: str, session: DbSession, settings: AppSettings, actor: Reviewer) -> ReviewRead:
    """What a reviewer decides on: the automatic checks and scores, the evidence, recent failed proofs."""
    order = service.get_order(session, actor=actor, reference=reference)
    record(
        session,
        actor=actor.label,
        action="replacement.review_opened",
        subject_type="replacement_order",
        subject_id=order.reference,
    )
    session.commit()
    return ReviewRead(
        order=to_read(session, order),
        checks=[
            IdentityCheckRead(
                kind=c.kind,
                verdict=c.verdict,
                score=c.score,
                reasons=list(c.reasons),
                checked_at=c.checked_at,
            )
            for c in online.checks_of(session, order)
        ],
        evidence=[
            EvidenceRead(
                reference=e.reference,
                kind=e.kind,
                content_type=e.content_type,
                size_bytes=e.size_bytes,
                uploaded_at=e.uploaded_at,
                purged=e.purged_at is not None,
            )
            for e in online.evidence_of(session, order)
        ],
        proofs_failed_recently=recent_failures(session, settings, order.line_id),
    )
