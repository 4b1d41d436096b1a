"""``simkeep orders``: replacement orders (补卡) and the fee schedule, for operators.

The commands act as the CLI actor: it sees every order and plays the system's part in the workflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from sqlalchemy.orm import Session

from simkeep.audit.service import record
from simkeep.auth.actors import CLI
from simkeep.billing import service as billing
from simkeep.cli_support import JSON_OPTION, emit, fail, load_settings, open_session
from simkeep.config import Settings
from simkeep.errors import DomainError, InvalidInput
from simkeep.masking import mask_iccid, mask_msisdn
from simkeep.models import Channel, Line, OrderState, ReplacementOrder, Sim
from simkeep.replacements import service, workflow

app = typer.Typer(help="Replacement orders (补卡) and their fees.", no_args_is_help=True)


@contextmanager
def _session(as_json: bool) -> Iterator[tuple[Session, Settings]]:
    """A session for one command; a domain error rolls everything back and ends the command with it."""
    settings = load_settings()
    with open_session(settings) as session:
        try:
            yield session, settings
        except DomainError as exc:
            session.rollback()
            raise fail(exc.message, as_json=as_json, code=exc.code, **exc.details) from exc


def _parse_state(value: str | None) -> OrderState | None:
    if value is None:
        return None
    try:
        return OrderState(value.strip().lower())
    except ValueError:
        states = ", ".join(str(s) for s in OrderState)
        raise InvalidInput(
            f"Unknown state {value!r}; the states are {states}.", code="STATE_INVALID"
        ) from None


def _parse_channel(value: str) -> Channel:
    try:
        return Channel(value.strip().lower())
    except ValueError:
        channels = ", ".join(str(c) for c in Channel)
        raise InvalidInput(
            f"Unknown channel {value!r}; the channels are {channels}.", code="CHANNEL_INVALID"
        ) from None


def _money(amount_minor: int, currency: str) -> str:
    return f"{amount_minor / 100:.2f} {currency}"


def _order_view(session: Session, order: ReplacementOrder) -> dict[str, Any]:
    line = session.get(Line, order.line_id)
    sim = session.get(Sim, order.new_sim_id) if order.new_sim_id else None
    assert line is not None
    return {
        "reference": order.reference,
        "msisdn": line.msisdn,
        "channel": str(order.channel),
        "sim_kind": order.sim_kind,
        "state": str(order.state),
        "fee": {
            "amount_minor": order.fee_amount_minor,
            "currency": order.fee_currency,
            "display": _money(order.fee_amount_minor, order.fee_currency),
        },
        "fee_waived": order.fee_waived,
        "assurance": order.assurance,
        "proofs": list(order.proofs),
        "tracking_number": order.tracking_number,
        "new_sim_iccid": mask_iccid(sim.iccid) if sim else None,
        "decision_reason": order.decision_reason,
        "created_by": order.created_by,
        "created_at": order.created_at.isoformat(),
        "expires_at": order.expires_at.isoformat(),
        "activated_at": order.activated_at.isoformat() if order.activated_at else None,
        "closed_at": order.closed_at.isoformat() if order.closed_at else None,
        "next_steps": workflow.next_steps(order),
    }


def _order_row(view: dict[str, Any]) -> str:
    return (
        f"{view['reference']:<12} {view['state']:<17} {view['channel']:<12} "
        f"{mask_msisdn(view['msisdn']):<15} {view['created_at'][:16]}"
    )


@app.command("expire")
def expire(as_json: bool = JSON_OPTION) -> None:
    """Expire open orders past their activation deadline and give their SIMs back to stock."""
    with _session(as_json) as (session, _settings):
        expired = service.expire_overdue(session)
        record(
            session,
            actor=CLI.label,
            action="replacement.expiry_run",
            subject_type="system",
            subject_id="expiry",
            data={"expired": len(expired)},
        )
        session.commit()
    text = "\n".join([f"expired {len(expired)} order(s)", *expired])
    emit({"expired": expired}, as_json=as_json, text=text)


@app.command("list")
def list_orders(
    state: str | None = typer.Option(None, "--state", help="Only orders in this state, e.g. in_review."),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="At most this many orders."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List orders, oldest first (the queue order)."""
    with _session(as_json) as (session, _settings):
        wanted = _parse_state(state)
        views = [
            _order_view(session, o)
            for o in service.list_orders(session, actor=CLI, state=wanted, limit=limit)
        ]
    text = "\n".join(_order_row(v) for v in views) or "no orders"
    emit(views, as_json=as_json, text=text)


@app.command("show")
def show(
    reference: str = typer.Argument(..., help="The order's reference, e.g. RO-7KQ2M9XA."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one order with its timeline."""
    with _session(as_json) as (session, _settings):
        order = service.get_order(session, actor=CLI, reference=reference.strip().upper())
        view = _order_view(session, order)
        view["timeline"] = [
            {
                "transition": e.transition,
                "from_state": e.from_state,
                "to_state": e.to_state,
                "actor": e.actor,
                "note": e.note,
                "at": e.at.isoformat(),
            }
            for e in service.timeline(session, order)
        ]
    lines = [
        f"order      {view['reference']}  ({view['channel']}, {view['sim_kind']} SIM)",
        f"number     {mask_msisdn(view['msisdn'])}",
        f"state      {view['state']}    next: {', '.join(view['next_steps']) or '-'}",
        f"fee        {view['fee']['display']}{' (waived)' if view['fee_waived'] else ''}",
        f"assurance  {view['assurance']}  ({', '.join(view['proofs'])})",
        f"expires    {view['expires_at'][:16]}",
        "timeline:",
        *(
            f"  {e['at'][:19]}  {e['transition']:<20} -> {e['to_state']:<17} {e['actor']}"
            + (f"  ({e['note']})" if e["note"] else "")
            for e in view["timeline"]
        ),
    ]
    if view["tracking_number"]:
        lines.insert(5, f"tracking   {view['tracking_number']}")
    emit(view, as_json=as_json, text="\n".join(lines))


@app.command("fees")
def fees(as_json: bool = JSON_OPTION) -> None:
    """Show the replacement fee per channel and SIM kind."""
    with _session(as_json) as (session, settings):
        schedule = billing.schedule(session, settings)
    rows = [
        {
            "channel": q.channel,
            "sim_kind": q.sim_kind,
            "amount_minor": q.amount_minor,
            "currency": q.currency,
            "display": _money(q.amount_minor, q.currency),
        }
        for q in schedule
    ]
    text = "\n".join(f"{r['channel']:<12} {r['sim_kind']:<9} {r['display']}" for r in rows)
    emit(rows, as_json=as_json, text=text)


@app.command("set-fee")
def set_fee(
    channel: str = typer.Argument(..., help="store, online_mail or esim."),
    amount_minor: int = typer.Argument(..., help="The fee in minor units (fen): 1000 is 10.00."),
    currency: str | None = typer.Option(None, "--currency", help="ISO 4217 code (default: the configured)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set the replacement fee of a channel."""
    with _session(as_json) as (session, settings):
        chosen = _parse_channel(channel)
        fee = billing.set_fee(
            session,
            channel=chosen,
            sim_kind=service.SIM_KIND_FOR[chosen],
            amount_minor=amount_minor,
            currency=currency or settings.currency,
        )
        record(
            session,
            actor=CLI.label,
            action="fee.set",
            subject_type="fee",
            subject_id=str(chosen),
            data={"amount_minor": fee.amount_minor, "currency": fee.currency},
        )
        session.commit()
        result = {
            "channel": fee.channel,
            "sim_kind": fee.sim_kind,
            "amount_minor": fee.amount_minor,
            "currency": fee.currency,
            "display": _money(fee.amount_minor, fee.currency),
        }
    emit(result, as_json=as_json, text=f"fee for {result['channel']} set to {result['display']}")
