"""The replacement order's state machine: every state, every named transition, in one place.

Nothing else assigns ``ReplacementOrder.state``. :func:`apply` checks that the order is in a source state of
the transition and in one of its channels, and that the actor plays one of its roles; it then moves the
order, writes the timeline event and the audit entry. Domain guards (cool-down, stock, proofs) are checked
by the service before it calls :func:`apply`.

::

    submit -> submitted -> start_verification -> verifying
    verifying -> approve | refer_to_review -> in_review | reject
    in_review -> approve | reject
    approved -> request_payment -> awaiting_payment -> record_payment | waive_fee -> paid
    paid -> assign_sim -> sim_assigned
    sim_assigned -> ship -> shipped -> confirm_delivery -> delivered      (online_mail)
    shipped -> hold -> on_hold -> reship -> shipped                       (a returned parcel)
    sim_assigned (store, esim) | shipped | delivered (online_mail) -> activate -> activated
        (with an external HLR: -> start_activation -> activating -> complete_activation -> activated,
         or activating -> activation_failed -> sim_assigned / delivered when the HLR refuses the move)
    sim_assigned (esim) -> activate_installed -> activated    (the SM-DP+ reported the profile installed)
    any open state -> cancel -> cancelled;  any open state -> expire -> expired
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import Actor
from simkeep.db.base import utcnow
from simkeep.models import Channel, Line, OrderEvent, OrderState, ReplacementOrder, Subscriber
from simkeep.replacements.errors import ActorNotAllowed, TransitionNotAllowed

S = OrderState
ALL_CHANNELS = frozenset(Channel)
ONLINE_CHANNELS = frozenset({Channel.ONLINE_MAIL, Channel.ESIM})
TERMINAL_STATES = frozenset({S.ACTIVATED, S.REJECTED, S.CANCELLED, S.EXPIRED})
OPEN_STATES = frozenset(set(S) - TERMINAL_STATES)

HOLDER, CLERK, REVIEWER, ADMIN, SYSTEM = "holder", "clerk", "reviewer", "admin", "system"


@dataclass(frozen=True)
class Transition:
    """A named step from some states to one state, for some channels, by some roles."""

    name: str
    sources: frozenset[OrderState]
    target: OrderState
    roles: frozenset[str]
    channels: frozenset[Channel] = ALL_CHANNELS


def _t(
    name: str,
    sources: set[OrderState],
    target: OrderState,
    roles: set[str],
    channels: frozenset[Channel] = ALL_CHANNELS,
) -> Transition:
    return Transition(name, frozenset(sources), target, frozenset(roles | {ADMIN}), channels)


TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        _t("start_verification", {S.SUBMITTED}, S.VERIFYING, {SYSTEM}),
        _t("approve", {S.VERIFYING}, S.APPROVED, {SYSTEM}),
        _t("refer_to_review", {S.VERIFYING}, S.IN_REVIEW, {SYSTEM}),
        _t("approve_after_review", {S.IN_REVIEW}, S.APPROVED, {REVIEWER}),
        _t("reject", {S.VERIFYING, S.IN_REVIEW}, S.REJECTED, {SYSTEM, REVIEWER}),
        _t("request_payment", {S.APPROVED}, S.AWAITING_PAYMENT, {SYSTEM}),
        _t("record_payment", {S.AWAITING_PAYMENT}, S.PAID, {HOLDER, CLERK, SYSTEM}),
        _t("waive_fee", {S.AWAITING_PAYMENT}, S.PAID, {CLERK, REVIEWER}),
        _t("assign_sim", {S.PAID}, S.SIM_ASSIGNED, {CLERK, SYSTEM}),
        _t("ship", {S.SIM_ASSIGNED}, S.SHIPPED, {SYSTEM}, frozenset({Channel.ONLINE_MAIL})),
        _t("confirm_delivery", {S.SHIPPED}, S.DELIVERED, {SYSTEM}, frozenset({Channel.ONLINE_MAIL})),
        _t("hold", {S.SHIPPED}, S.ON_HOLD, {SYSTEM}, frozenset({Channel.ONLINE_MAIL})),
        _t("reship", {S.ON_HOLD}, S.SHIPPED, {SYSTEM}, frozenset({Channel.ONLINE_MAIL})),
        _t(
            "activate",
            {S.SIM_ASSIGNED},
            S.ACTIVATED,
            {HOLDER, CLERK},
            frozenset({Channel.STORE, Channel.ESIM}),
        ),
        _t(
            "activate_delivered",
            {S.SHIPPED, S.DELIVERED},
            S.ACTIVATED,
            {HOLDER, CLERK},
            frozenset({Channel.ONLINE_MAIL}),
        ),
        _t(
            "activate_installed",
            {S.SIM_ASSIGNED},
            S.ACTIVATED,
            {SYSTEM},
            frozenset({Channel.ESIM}),
        ),
        _t(
            "start_activation",
            {S.SIM_ASSIGNED},
            S.ACTIVATING,
            {HOLDER, CLERK, SYSTEM},
            frozenset({Channel.STORE, Channel.ESIM}),
        ),
        _t(
            "start_activation_delivered",
            {S.SHIPPED, S.DELIVERED},
            S.ACTIVATING,
            {HOLDER, CLERK},
            frozenset({Channel.ONLINE_MAIL}),
        ),
        _t("complete_activation", {S.ACTIVATING}, S.ACTIVATED, {SYSTEM}),
        _t(
            "activation_failed",
            {S.ACTIVATING},
            S.SIM_ASSIGNED,
            {SYSTEM},
            frozenset({Channel.STORE, Channel.ESIM}),
        ),
        _t(
            "activation_failed_delivered",
            {S.ACTIVATING},
            S.DELIVERED,
            {SYSTEM},
            frozenset({Channel.ONLINE_MAIL}),
        ),
        # An order whose number is moving in the network can be neither cancelled nor expired.
        _t("cancel", set(OPEN_STATES - {S.ACTIVATING}), S.CANCELLED, {HOLDER, CLERK, REVIEWER}),
        _t("expire", set(OPEN_STATES - {S.ACTIVATING}), S.EXPIRED, {SYSTEM}),
    )
}


def role_of(actor: Actor) -> str:
    """The workflow role an actor plays."""
    if actor.kind == "line":
        return HOLDER
    if actor.kind in ("system", "cli"):
        return SYSTEM
    if actor.is_staff and actor.role is not None:
        return str(actor.role)
    return "anonymous"


def allowed(order: ReplacementOrder, name: str, actor: Actor) -> bool:
    """Whether ``actor`` may run transition ``name`` on ``order`` now."""
    t = TRANSITIONS[name]
    return order.state in t.sources and order.channel in t.channels and role_of(actor) in t.roles


def next_steps(order: ReplacementOrder) -> list[str]:
    """The transitions that may run from the order's state for its channel."""
    return [t.name for t in TRANSITIONS.values() if order.state in t.sources and order.channel in t.channels]


def start(session: Session, order: ReplacementOrder, *, actor: Actor) -> None:
    """Record a new order in state ``submitted``: the workflow's entry, audited like any transition."""
    order.state = S.SUBMITTED
    session.add(order)
    session.flush()
    _log(session, order, "submit", None, actor=actor, note="", data={})
    _announce(session, order, note="")


def apply(
    session: Session,
    order: ReplacementOrder,
    name: str,
    *,
    actor: Actor,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """Run transition ``name``: refuse it out of order, out of channel or by the wrong actor."""
    t = TRANSITIONS[name]
    if order.state not in t.sources or order.channel not in t.channels:
        raise TransitionNotAllowed(
            f"'{name}' cannot run on a {order.channel} order in state '{order.state}'.",
            state=str(order.state),
            allowed=next_steps(order),
        )
    if role_of(actor) not in t.roles:
        raise ActorNotAllowed(f"'{name}' is not a step for a {role_of(actor)}.")
    previous = order.state
    order.state = t.target
    now = utcnow()
    if t.target in TERMINAL_STATES:
        order.open_line_id = None
        order.closed_at = now
    _log(session, order, name, previous, actor=actor, note=note, data=data or {})
    _announce(session, order, note=note)


def _log(
    session: Session,
    order: ReplacementOrder,
    name: str,
    previous: OrderState | None,
    *,
    actor: Actor,
    note: str,
    data: dict[str, Any],
) -> None:
    session.add(
        OrderEvent(
            order_id=order.id,
            transition=name,
            from_state=str(previous) if previous else None,
            to_state=str(order.state),
            actor=actor.label,
            note=note[:500],
            at=utcnow(),
        )
    )
    record(
        session,
        actor=actor.label,
        action=f"replacement.{name}",
        subject_type="replacement_order",
        subject_id=order.reference,
        reason=note,
        data={"from": str(previous) if previous else None, "to": str(order.state), **data},
    )


# The states a holder hears about, and the template that tells them (the SIM change is announced on
# activation, on every registered contact, none of them the line's own number).
ANNOUNCED: dict[OrderState, str] = {
    S.SUBMITTED: "order_submitted",
    S.IN_REVIEW: "order_in_review",
    S.AWAITING_PAYMENT: "order_approved",
    S.REJECTED: "order_rejected",
    S.SHIPPED: "order_shipped",
    S.DELIVERED: "order_delivered",
    S.ON_HOLD: "order_on_hold",
    S.ACTIVATED: "sim_changed",
    S.EXPIRED: "order_expired",
    S.CANCELLED: "order_cancelled",
}


def _announce(session: Session, order: ReplacementOrder, *, note: str) -> None:
    """Queue the holder's notification for the state the order just reached, if it is one they hear about."""
    template = ANNOUNCED.get(order.state)
    if template is None or (order.state == S.AWAITING_PAYMENT and order.channel == Channel.STORE):
        return  # (at a counter the holder pays there and then)
    from simkeep.notifications.service import notify

    line = session.get(Line, order.line_id)
    holder = session.get(Subscriber, line.subscriber_id) if line is not None else None
    if line is None or holder is None:
        return
    english = str(holder.language) != "zh-CN"
    fee = f"{order.fee_amount_minor / 100:.2f} {order.fee_currency}"
    params: dict[str, object] = {
        "reference": order.reference,
        "fee": fee,
        "reason": note or ("see your application" if english else "详见申请记录"),
        "tracking": order.tracking_number or "-",
        "eta": _eta(session, order),
        "deadline": order.expires_at.strftime("%Y-%m-%d"),
        "when": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        "refund": _refund_text(session, order, english=english),
    }
    notify(session, None, subscriber=holder, line=line, template=template, **params)


def _refund_text(session: Session, order: ReplacementOrder, *, english: bool) -> str:
    if order.state != S.CANCELLED:
        return ""
    from simkeep.billing import service as billing

    charge = billing.charge_of(session, order)  # a cancelled order's charge is refunded in full
    if charge is None or charge.amount_minor == 0:
        return "Nothing was charged." if english else "未产生费用。"
    amount = f"{charge.amount_minor / 100:.2f} {charge.currency}"
    return f"{amount} will be refunded." if english else f"{amount} 将退回原支付方式。"


def _eta(session: Session, order: ReplacementOrder) -> str:
    """The parcel's expected delivery date, where shipping knows one."""
    from simkeep.shipping.service import expected_delivery

    eta = expected_delivery(session, order)
    return eta.isoformat() if eta is not None else "-"
