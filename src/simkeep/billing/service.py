"""The fee schedule and the payments of replacement orders."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import InvalidInput
from simkeep.models import Channel, Fee, Payment, PaymentKind, PaymentMethod, ReplacementOrder, SimKind

DEFAULT_FEE_MINOR = 1000  # 10 CNY for every channel and SIM kind (DOMAIN.md section 4)


@dataclass(frozen=True)
class Quote:
    """A fee as shown before paying."""

    channel: str
    sim_kind: str
    amount_minor: int
    currency: str


def quote(session: Session, settings: Settings, *, channel: Channel, sim_kind: SimKind) -> Quote:
    """The fee for a channel and SIM kind: the schedule's entry, or the default."""
    fee = session.scalar(select(Fee).where(Fee.channel == str(channel), Fee.sim_kind == str(sim_kind)))
    if fee is None:
        return Quote(str(channel), str(sim_kind), DEFAULT_FEE_MINOR, settings.currency)
    return Quote(fee.channel, fee.sim_kind, fee.amount_minor, fee.currency)


def schedule(session: Session, settings: Settings) -> list[Quote]:
    """Every channel's fee, per SIM kind it offers."""
    pairs = [
        (Channel.STORE, SimKind.PHYSICAL),
        (Channel.ONLINE_MAIL, SimKind.PHYSICAL),
        (Channel.ESIM, SimKind.ESIM),
    ]
    return [quote(session, settings, channel=c, sim_kind=k) for c, k in pairs]


def set_fee(
    session: Session, *, channel: Channel, sim_kind: SimKind, amount_minor: int, currency: str
) -> Fee:
    """Set one entry of the schedule (amounts in minor units, e.g. fen)."""
    if amount_minor < 0 or amount_minor > 1_000_000:
        raise InvalidInput("A fee is between 0 and 10,000.00.", code="FEE_INVALID")
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput("A currency is a three-letter ISO 4217 code.", code="FEE_INVALID")
    fee = session.scalar(select(Fee).where(Fee.channel == str(channel), Fee.sim_kind == str(sim_kind)))
    if fee is None:
        fee = Fee(
            channel=str(channel), sim_kind=str(sim_kind), amount_minor=amount_minor, currency=currency.upper()
        )
        session.add(fee)
    else:
        fee.amount_minor = amount_minor
        fee.currency = currency.upper()
        fee.updated_at = utcnow()
    session.flush()
    return fee


def charge_of(session: Session, order: ReplacementOrder) -> Payment | None:
    """The order's charge, if paid."""
    return session.scalar(
        select(Payment).where(Payment.order_id == order.id, Payment.kind == PaymentKind.CHARGE)
    )


def refund_of(session: Session, order: ReplacementOrder) -> Payment | None:
    """The order's refund, if any."""
    return session.scalar(
        select(Payment).where(Payment.order_id == order.id, Payment.kind == PaymentKind.REFUND)
    )


def record_charge(
    session: Session,
    *,
    order: ReplacementOrder,
    method: PaymentMethod,
    reference: str | None,
    recorded_by: str,
    reason: str | None = None,
) -> Payment:
    """Record the order's fee as paid (or waived)."""
    if method == PaymentMethod.ONLINE:
        if not reference:
            raise InvalidInput("An online payment needs its payment reference.", code="PAYMENT_INVALID")
        if session.scalar(select(Payment.id).where(Payment.reference == reference, Payment.method == method)):
            raise InvalidInput("That payment reference was already used.", code="PAYMENT_REFERENCE_USED")
    payment = Payment(
        order_id=order.id,
        kind=PaymentKind.CHARGE,
        method=method,
        amount_minor=0 if method == PaymentMethod.WAIVED else order.fee_amount_minor,
        currency=order.fee_currency,
        reference=reference,
        recorded_by=recorded_by,
        reason=reason,
    )
    session.add(payment)
    session.flush()
    return payment


def refund_if_owed(session: Session, *, order: ReplacementOrder, recorded_by: str) -> Payment | None:
    """Refund the charge of an order cancelled before its SIM left stock; returns the refund, if any."""
    charge = charge_of(session, order)
    if charge is None or charge.amount_minor == 0 or refund_of(session, order) is not None:
        return None
    refund = Payment(
        order_id=order.id,
        kind=PaymentKind.REFUND,
        method=charge.method,
        amount_minor=charge.amount_minor,
        currency=charge.currency,
        reference=charge.reference,
        recorded_by=recorded_by,
        reason="order cancelled before the SIM was sent",
    )
    session.add(refund)
    session.flush()
    return refund
