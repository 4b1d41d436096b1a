"""The demo dataset: two stores, SIM stock, staff, twelve holders and replacement orders in many states.

Everything is documented in ``docs/demo.md``. Loading is idempotent: stores, staff users and lines are
recognised by their store code, user name and number, SIM stock by its batch, and only what is missing is
added; the replacement scenarios run only for lines created in the same load. The orders are driven through
the real service functions (loss reports, submission, review, payment, stock, shipping, activation,
cancellation), so their timelines, payments, SIM changes and audit entries are those a real run leaves.

The caller runs the migrations first and commits once afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import ANONYMOUS, CLI, Actor
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.demo import evidence as demo_evidence
from simkeep.demo.people import (
    DEMO_SERVICE_PASSWORD,
    DEMO_STAFF_PASSWORD,
    ESIM_BATCH,
    ESIM_SERIALS,
    ESIM_STOCK,
    HOLDERS,
    INITIAL_BATCH,
    INITIAL_SERIALS,
    PLAN_CODE,
    SCENARIO_TEXT,
    STAFF,
    STORE_SERIALS,
    STORE_STOCK,
    STORES,
    WAREHOUSE_BATCH,
    WAREHOUSE_SERIALS,
    WAREHOUSE_STOCK,
    HolderSpec,
    Scenario,
    demo_iccid,
    demo_imsi,
    store_batch,
)
from simkeep.errors import Conflict
from simkeep.identity.assurance import Assurance, Method
from simkeep.identity.service import Evidence, document_hash
from simkeep.loss import service as loss_service
from simkeep.models import (
    Channel,
    EmbeddedHlrSubscriber,
    Line,
    LineStatus,
    LossReport,
    PaymentMethod,
    Plan,
    ReplacementOrder,
    Sim,
    SimChange,
    SimChangeChannel,
    SimKind,
    SimLocation,
    SimStatus,
    StaffUser,
    Store,
    Subscriber,
    SuspensionReason,
)
from simkeep.replacements import activation
from simkeep.replacements import service as orders
from simkeep.security import hash_password
from simkeep.staff import service as staff_service


class DemoConflict(Conflict):
    """Data already in the database contradicts the demo (a demo user name taken with another role)."""

    code = "DEMO_CONFLICT"


# --- loading ----------------------------------------------------------------------------------------------


@dataclass
class Created:
    """What one load added."""

    stores: int = 0
    sims: int = 0
    staff_users: int = 0
    lines: int = 0
    orders: int = 0
    loss_reports: int = 0

    @property
    def anything(self) -> bool:
        """Whether the load added anything."""
        return any(vars(self).values())


@dataclass
class _Cast:
    """The demo's staff users as actors, once they exist."""

    staff: dict[str, Actor] = field(default_factory=dict)


def _staff_actor(user: StaffUser) -> Actor:
    """The actor :func:`simkeep.auth.service.resolve` builds for a staff user's token."""
    return Actor(
        kind="staff",
        label=f"staff:{user.username}",
        staff_user_id=user.id,
        role=user.role,
        store_id=user.store_id,
    )


def _line_actor(line: Line) -> Actor:
    """The actor of a holder signed in to ``line`` with the service password."""
    return Actor(
        kind="line",
        label=f"line:{line.id}",
        line_id=line.id,
        assurance=Assurance.MEDIUM,
        proof_methods=(str(Method.SERVICE_PASSWORD),),
    )


def _batch_exists(session: Session, batch: str) -> bool:
    return session.scalar(select(Sim.id).where(Sim.batch == batch).limit(1)) is not None


def _add_stock(
    session: Session, *, batch: str, first_serial: int, count: int, kind: SimKind, store: Store | None
) -> int:
    if _batch_exists(session, batch):
        return 0
    for i in range(1, count + 1):
        session.add(
            Sim(
                iccid=demo_iccid(first_serial + i),
                imsi=demo_imsi(first_serial + i),
                kind=kind,
                status=SimStatus.IN_STOCK,
                location=SimLocation.STORE if store else SimLocation.WAREHOUSE,
                store_id=store.id if store else None,
                batch=batch,
            )
        )
    session.flush()
    return count


def _load_stores(session: Session, created: Created) -> None:
    for spec in STORES:
        store = staff_service.store_by_code(session, spec.code)
        if store is None:
            store = staff_service.add_store(
                session, actor=CLI, code=spec.code, name=spec.name, region=spec.region, address=spec.address
            )
            created.stores += 1
        created.sims += _add_stock(
            session,
            batch=store_batch(spec.code),
            first_serial=STORE_SERIALS[spec.code],
            count=STORE_STOCK,
            kind=SimKind.PHYSICAL,
            store=store,
        )
    created.sims += _add_stock(
        session,
        batch=WAREHOUSE_BATCH,
        first_serial=WAREHOUSE_SERIALS,
        count=WAREHOUSE_STOCK,
        kind=SimKind.PHYSICAL,
        store=None,
    )
    created.sims += _add_stock(
        session, batch=ESIM_BATCH, first_serial=ESIM_SERIALS, count=ESIM_STOCK, kind=SimKind.ESIM, store=None
    )


def _load_staff(session: Session, created: Created) -> _Cast:
    cast = _Cast()
    for spec in STAFF:
        user = staff_service.user_by_name(session, spec.username)
        if user is None:
            user = staff_service.create_user(
                session,
                actor=CLI,
                username=spec.username,
                role=spec.role,
                password=DEMO_STAFF_PASSWORD,
                store_code=spec.store_code,
                display_name=spec.display_name,
            )
            created.staff_users += 1
        elif user.role != spec.role or not user.active:
            raise DemoConflict(
                f"The staff user {spec.username} exists with role {user.role}"
                f"{'' if user.active else ' and is disabled'}; the demo needs an active {spec.role}."
            )
        cast.staff[spec.username] = _staff_actor(user)
    return cast


def _plan(session: Session) -> Plan:
    plan = session.scalar(select(Plan).where(Plan.code == PLAN_CODE))
    if plan is None:
        plan = Plan(code=PLAN_CODE, name="保号套餐 (number keeper)", inactivity_days=180)
        session.add(plan)
        session.flush()
    return plan


def _add_holder(session: Session, settings: Settings, spec: HolderSpec, plan: Plan, serial: int) -> Line:
    """A holder, their active line, its live SIM, the initial SIM change and the embedded HLR entry."""
    now = utcnow()
    sub = Subscriber(
        real_name=spec.real_name,
        document_type=spec.document_type,
        document_number_hmac=document_hash(settings, spec.document_number),
        document_number_last4=spec.document_number[-4:],
        document_country=spec.document_country,
        contact_email=spec.email,
        contact_phone=spec.contact_phone,
        delivery_address=spec.delivery_address,
        language=spec.language,
        service_password_hash=hash_password(DEMO_SERVICE_PASSWORD),
        external_ref=f"DEMO-{spec.msisdn[-4:]}",
    )
    session.add(sub)
    live = Sim(
        iccid=demo_iccid(serial),
        imsi=demo_imsi(serial),
        kind=SimKind.PHYSICAL,
        status=SimStatus.ACTIVE,
        location=SimLocation.WAREHOUSE,
        batch=INITIAL_BATCH,
    )
    session.add(live)
    session.flush()
    activated = now - timedelta(days=365 * spec.years_held + 17)
    line = Line(
        msisdn=spec.msisdn,
        subscriber_id=sub.id,
        plan_id=plan.id,
        status=LineStatus.ACTIVE,
        sim_id=live.id,
        activated_at=activated,
        last_activity_at=now - timedelta(days=spec.days_since_activity, hours=5),
    )
    session.add(line)
    session.flush()
    session.add(
        SimChange(
            line_id=line.id,
            old_sim_id=None,
            new_sim_id=live.id,
            changed_at=activated,
            channel=SimChangeChannel.INITIAL,
        )
    )
    session.add(EmbeddedHlrSubscriber(imsi=live.imsi, msisdn=line.msisdn, network_access_mode="cs+ps"))
    session.flush()
    return line


# --- scenarios: each drives one line through the real use cases ---------------------------------------


@dataclass(frozen=True)
class _Play:
    session: Session
    settings: Settings
    cast: _Cast
    spec: HolderSpec
    line: Line

    @property
    def holder(self) -> Actor:
        return _line_actor(self.line)

    def staff(self, username: str) -> Actor:
        return self.cast.staff[username]


def _scanned_iccid(session: Session, store_id: int | None) -> str:
    """The ICCID a clerk scans: the first blank SIM in the store's drawer."""
    iccid = session.scalar(
        select(Sim.iccid)
        .where(Sim.store_id == store_id, Sim.status == SimStatus.IN_STOCK, Sim.kind == SimKind.PHYSICAL)
        .order_by(Sim.id)
        .limit(1)
    )
    assert iccid is not None, "the demo store has no SIM in stock"
    return iccid


def _loss_reported(p: _Play) -> None:
    loss_service.report_loss(
        p.session,
        p.settings,
        actor=ANONYMOUS,
        msisdn=p.spec.msisdn,
        reason=SuspensionReason.LOST,
        evidence=Evidence(real_name=p.spec.real_name),
    )


def _online(p: _Play, channel: Channel) -> ReplacementOrder:
    application, checks = demo_evidence.online_application(
        p.session, p.settings, holder=p.holder, line=p.line, document_number=p.spec.document_number
    )
    return orders.submit(
        p.session,
        p.settings,
        actor=p.holder,
        msisdn=p.spec.msisdn,
        channel=channel,
        evidence=Evidence(),
        application=application,
        checks=checks,
    )


def _approved(p: _Play, channel: Channel, reason: str) -> ReplacementOrder:
    order = _online(p, channel)
    return orders.decide(
        p.session, actor=p.staff("reviewer"), reference=order.reference, approve=True, reason=reason
    )


def _paid_online(p: _Play, channel: Channel, reason: str) -> ReplacementOrder:
    order = _approved(p, channel, reason)
    return orders.pay(
        p.session,
        actor=p.holder,
        reference=order.reference,
        method=PaymentMethod.ONLINE,
        payment_reference=f"DEMO-PAY-{p.spec.msisdn[-4:]}",
    )


def _in_review(p: _Play) -> None:
    _online(p, Channel.ONLINE_MAIL)


def _awaiting_payment(p: _Play) -> None:
    _approved(p, Channel.ONLINE_MAIL, "Passport data match the registration; contact e-mail confirmed.")


def _shipped(p: _Play) -> None:
    order = _paid_online(p, Channel.ONLINE_MAIL, "Holder confirmed by call-back to the registered e-mail.")
    orders.ship(
        p.session,
        p.settings,
        actor=p.staff("admin"),
        reference=order.reference,
        tracking_number="SF1402638750",
    )


def _esim_assigned(p: _Play) -> None:
    _paid_online(p, Channel.ESIM, "Passport data match the registration; eSIM-capable phone declared.")


def _store_order(p: _Play, clerk_name: str) -> ReplacementOrder:
    clerk = p.staff(clerk_name)
    order = orders.submit(
        p.session,
        p.settings,
        actor=clerk,
        msisdn=p.spec.msisdn,
        channel=Channel.STORE,
        evidence=Evidence(in_person_document_number=p.spec.document_number),
    )
    orders.pay(
        p.session, actor=clerk, reference=order.reference, method=PaymentMethod.CASH, payment_reference=None
    )
    iccid = _scanned_iccid(p.session, clerk.store_id)
    return orders.assign_sim(p.session, actor=clerk, reference=order.reference, iccid=iccid)


def _store_activated(p: _Play) -> None:
    loss_service.report_loss(
        p.session,
        p.settings,
        actor=p.holder,
        msisdn=p.spec.msisdn,
        reason=SuspensionReason.STOLEN,
        evidence=Evidence(),
    )
    order = _store_order(p, "clerk.bj")
    activation.activate(p.session, p.settings, actor=p.staff("clerk.bj"), reference=order.reference)


def _cancelled_refunded(p: _Play) -> None:
    order = _store_order(p, "clerk.sh")
    orders.cancel(
        p.session,
        actor=p.staff("clerk.sh"),
        reference=order.reference,
        reason="The holder found the old SIM before activation.",
    )


SCENARIOS: dict[Scenario, Callable[[_Play], None]] = {
    Scenario.IDLE: lambda _p: None,
    Scenario.LOSS_REPORTED: _loss_reported,
    Scenario.IN_REVIEW: _in_review,
    Scenario.AWAITING_PAYMENT: _awaiting_payment,
    Scenario.SHIPPED: _shipped,
    Scenario.STORE_ACTIVATED: _store_activated,
    Scenario.CANCELLED_REFUNDED: _cancelled_refunded,
    Scenario.ESIM_SIM_ASSIGNED: _esim_assigned,
}


def _count(session: Session, model: type[Any]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def load(session: Session, settings: Settings) -> Created:
    """Add whatever part of the demo dataset is missing; the caller commits."""
    created = Created()
    orders_before = _count(session, ReplacementOrder)
    reports_before = _count(session, LossReport)
    _load_stores(session, created)
    cast = _load_staff(session, created)
    plan = _plan(session)
    new_lines: list[tuple[HolderSpec, Line]] = []
    for i, spec in enumerate(HOLDERS, start=1):
        if session.scalar(select(Line.id).where(Line.msisdn == spec.msisdn)) is not None:
            continue
        new_lines.append((spec, _add_holder(session, settings, spec, plan, INITIAL_SERIALS + i)))
        created.lines += 1
        created.sims += 1
    for spec, line in new_lines:
        SCENARIOS[spec.scenario](_Play(session, settings, cast, spec, line))
    created.orders = _count(session, ReplacementOrder) - orders_before
    created.loss_reports = _count(session, LossReport) - reports_before
    if created.anything:
        record(
            session,
            actor=CLI.label,
            action="demo.loaded",
            subject_type="system",
            subject_id="demo",
            data=dataclasses.asdict(created),
        )
    return created


# --- what is there ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumberSummary:
    """A demo number and what state the demo left it in (read back from the database)."""

    msisdn: str
    holder: str
    language: str
    scenario: str
    description: str
    line_status: str
    days_since_activity: int | None
    order_reference: str | None
    order_channel: str | None
    order_state: str | None
    loss_report: str | None


def summarise(session: Session) -> list[NumberSummary]:
    """Each demo number as it stands now."""
    now = utcnow()
    out = []
    for spec in HOLDERS:
        line = session.scalar(select(Line).where(Line.msisdn == spec.msisdn))
        if line is None:
            continue
        order = session.scalar(
            select(ReplacementOrder)
            .where(ReplacementOrder.line_id == line.id)
            .order_by(ReplacementOrder.id.desc())
            .limit(1)
        )
        report = session.scalar(
            select(LossReport).where(LossReport.line_id == line.id).order_by(LossReport.id.desc()).limit(1)
        )
        out.append(
            NumberSummary(
                msisdn=line.msisdn,
                holder=spec.real_name,
                language=str(spec.language),
                scenario=str(spec.scenario),
                description=SCENARIO_TEXT[spec.scenario],
                line_status=str(line.status),
                days_since_activity=(now - line.last_activity_at).days if line.last_activity_at else None,
                order_reference=order.reference if order else None,
                order_channel=str(order.channel) if order else None,
                order_state=str(order.state) if order else None,
                loss_report=f"{report.reference} ({report.status})" if report else None,
            )
        )
    return out
