"""Read-only queries the console's lists and charts need and no domain repository offers yet."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from simkeep.models import (
    IdentityCheck,
    Line,
    LineStatus,
    LossReport,
    OrderState,
    ReplacementOrder,
    Sim,
    SimChange,
    Store,
    Subscriber,
)
from simkeep.models.sims import is_stock
from simkeep.replacements.workflow import OPEN_STATES

SEARCH_LIMIT = 50


def search_lines(session: Session, *, msisdn: str | None, iccid: str | None, name: str | None) -> list[Line]:
    """Lines by exact number, by a SIM that serves or served them, or by the holder's name (prefix)."""
    stmt = select(Line)
    if msisdn is not None:
        stmt = stmt.where(Line.msisdn == msisdn)
    elif iccid is not None:
        sim_ids = select(Sim.id).where(Sim.iccid == iccid).scalar_subquery()
        served = select(SimChange.line_id).where(
            or_(SimChange.new_sim_id == sim_ids, SimChange.old_sim_id == sim_ids)
        )
        stmt = stmt.where(or_(Line.sim_id == sim_ids, Line.id.in_(served)))
    elif name:
        holders = select(Subscriber.id).where(Subscriber.real_name.like(f"{_escape(name)}%", escape="\\"))
        stmt = stmt.where(Line.subscriber_id.in_(holders))
    else:
        return []
    return list(session.scalars(stmt.order_by(Line.msisdn).limit(SEARCH_LIMIT)))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def loss_reports(session: Session, line_id: int) -> list[LossReport]:
    """A line's loss reports, newest first."""
    return list(
        session.scalars(
            select(LossReport).where(LossReport.line_id == line_id).order_by(LossReport.reported_at.desc())
        )
    )


def orders_of_line(session: Session, line_id: int) -> list[ReplacementOrder]:
    """A line's replacement orders, newest first."""
    return list(
        session.scalars(
            select(ReplacementOrder)
            .where(ReplacementOrder.line_id == line_id)
            .order_by(ReplacementOrder.created_at.desc(), ReplacementOrder.id.desc())
        )
    )


def sims_by_id(session: Session, ids: set[int]) -> dict[int, Sim]:
    """SIMs by id."""
    if not ids:
        return {}
    return {s.id: s for s in session.scalars(select(Sim).where(Sim.id.in_(ids)))}


def stock_counts(
    session: Session, *, store_id: int | None = None
) -> list[tuple[str, int | None, str, str, int]]:
    """Counts of the SIMs that are stock (in stock, reserved, shipped) by (location, store, kind, status);
    one store's only when ``store_id`` is given. SIMs with their holders (active, suspended) and retired
    ones are not stock; the counts read the stock-pick index alone, which holds the stock only."""
    stmt = (
        select(Sim.location, Sim.store_id, Sim.kind, Sim.status, func.count())
        .where(is_stock())
        .group_by(Sim.location, Sim.store_id, Sim.kind, Sim.status)
        .order_by(Sim.location, Sim.store_id, Sim.kind, Sim.status)
    )
    if store_id is not None:
        stmt = stmt.where(Sim.store_id == store_id)
    return [
        (str(loc), store, str(kind), str(status), int(n))
        for loc, store, kind, status, n in session.execute(stmt)
    ]


def stores(session: Session) -> list[Store]:
    """Every store, by code."""
    return list(session.scalars(select(Store).order_by(Store.code)))


def replacements_per_day(session: Session, *, since: datetime) -> list[tuple[str, str, int]]:
    """(day, channel, orders created) since ``since``."""
    rows = session.execute(
        select(ReplacementOrder.created_at, ReplacementOrder.channel).where(
            ReplacementOrder.created_at >= since
        )
    ).all()
    counts: dict[tuple[str, str], int] = {}
    for created, channel in rows:
        key = (created.strftime("%Y-%m-%d"), str(channel))
        counts[key] = counts.get(key, 0) + 1
    return [(day, channel, n) for (day, channel), n in sorted(counts.items())]


def open_orders_by_state(session: Session) -> dict[str, int]:
    """Open orders per state."""
    rows = session.execute(
        select(ReplacementOrder.state, func.count())
        .where(ReplacementOrder.state.in_(list(OPEN_STATES)))
        .group_by(ReplacementOrder.state)
    ).all()
    return {str(s): int(n) for s, n in rows}


def activation_hours_by_channel(session: Session, *, since: datetime) -> dict[str, tuple[float, int]]:
    """Average hours from order to activation per channel, and how many orders it averages."""
    rows = session.execute(
        select(ReplacementOrder.channel, ReplacementOrder.created_at, ReplacementOrder.activated_at).where(
            ReplacementOrder.state == OrderState.ACTIVATED,
            ReplacementOrder.activated_at.is_not(None),
            ReplacementOrder.activated_at >= since,
        )
    ).all()
    sums: dict[str, tuple[float, int]] = {}
    for channel, created, activated in rows:
        if activated is None:
            continue
        total, n = sums.get(str(channel), (0.0, 0))
        sums[str(channel)] = (total + (activated - created).total_seconds() / 3600, n + 1)
    return {c: (total / n, n) for c, (total, n) in sums.items()}


def verdicts_by_kind(session: Session, *, since: datetime) -> dict[str, dict[str, int]]:
    """Identity check verdicts per kind of check since ``since``."""
    rows = session.execute(
        select(IdentityCheck.kind, IdentityCheck.verdict, func.count())
        .where(IdentityCheck.checked_at >= since)
        .group_by(IdentityCheck.kind, IdentityCheck.verdict)
    ).all()
    out: dict[str, dict[str, int]] = {}
    for kind, verdict, n in rows:
        out.setdefault(str(kind), {})[str(verdict)] = int(n)
    return out


#: Days-left buckets (upper bounds, inclusive) for the keep-alive chart; the last is open-ended.
DAYS_LEFT_BUCKETS = (0, 7, 30, 60)


def lines_by_days_left(session: Session, *, now: datetime, window_days: int) -> list[tuple[str, int]]:
    """Live lines per days-left bucket, as :func:`simkeep.lines.service.keepalive_status` counts days.

    days_left = window - days since the last activity (or activation), so a bucket is a range of that date.
    """
    since = func.coalesce(Line.last_activity_at, Line.activated_at)
    live = Line.status != LineStatus.RECYCLED
    out: list[tuple[str, int]] = []
    lower = None
    for upper in DAYS_LEFT_BUCKETS:
        # days_left <= upper  <=>  since < now - (window - upper - 1) days
        cond = [live, since < now - timedelta(days=window_days - upper - 1)]
        if lower is not None:
            cond.append(since >= now - timedelta(days=window_days - lower - 1))
        label = f"{(lower + 1) if lower is not None else 0}-{upper}" if upper else "0"
        out.append((label, int(session.scalar(select(func.count()).select_from(Line).where(*cond)) or 0)))
        lower = upper
    assert lower is not None
    cond = [live, since >= now - timedelta(days=window_days - lower - 1)]
    out.append(
        (f"{lower + 1}+", int(session.scalar(select(func.count()).select_from(Line).where(*cond)) or 0))
    )
    return out
