"""The dashboard for admins and reviewers: replacements, open orders, time to activation, verification
outcomes and numbers by days left, drawn as server-side SVG."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.db.base import utcnow
from simkeep.models import Channel, OrderState, StaffRole
from simkeep.replacements.workflow import OPEN_STATES
from simkeep.web import i18n
from simkeep.web.console import charts, queries
from simkeep.web.console.common import page, t
from simkeep.web.console.menu import register
from simkeep.web.deps import require_staff_page

router = APIRouter()
register("/console/dashboard", "console.dashboard.menu", StaffRole.REVIEWER, StaffRole.ADMIN)
DashboardPage = Annotated[Actor, Depends(require_staff_page(StaffRole.REVIEWER))]
DAYS = 14
VERDICTS = (("pass", "ok"), ("review", "warn"), ("reject", "bad"))

i18n.add(
    {
        "console.dashboard.menu": ("数据看板", "Dashboard"),
        "console.dashboard.title": ("数据看板", "Dashboard"),
        "console.dashboard.per_day": (
            "近 {n} 天每日补卡申请（按渠道）",
            "Replacements per day, last {n} days, by channel",
        ),
        "console.dashboard.open": ("进行中的申请（按状态）", "Open orders by state"),
        "console.dashboard.activation": (
            "从申请到激活的平均时间（近 90 天，小时）",
            "Average time from order to activation (last 90 days, hours)",
        ),
        "console.dashboard.hours": ("{h} 小时（{n} 单）", "{h} h ({n} orders)"),
        "console.dashboard.verdicts": ("身份核验结果（近 30 天）", "Verification outcomes (last 30 days)"),
        "console.dashboard.days_left": ("号码距回收剩余天数", "Numbers by days left before recycling"),
        "console.dashboard.days": ("{label} 天", "{label} days"),
        "console.dashboard.nodata": ("暂无数据", "No data yet"),
    }
)


@router.get("/console/dashboard")
def dashboard(request: Request, session: DbSession, settings: AppSettings, actor: DashboardPage) -> Response:
    """Five charts over the orders, the checks and the lines."""
    now = utcnow()
    channels = list(Channel)
    legend = [(f"s{i}", t(request, f"channel.{c}")) for i, c in enumerate(channels)]

    start = (now - timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day = {(d, c): n for d, c, n in queries.replacements_per_day(session, since=start)}
    days = [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(DAYS)]
    per_day_chart = charts.columns(
        t(request, "console.dashboard.per_day", n=DAYS),
        [
            (
                day[5:],
                [
                    (
                        per_day.get((day, str(c)), 0),
                        f"s{i}",
                        f"{day} {t(request, f'channel.{c}')}: {per_day.get((day, str(c)), 0)}",
                    )
                    for i, c in enumerate(channels)
                ],
            )
            for day in days
        ],
        legend=legend,
        every=2,
    )

    open_counts = queries.open_orders_by_state(session)
    open_chart = charts.rows(
        t(request, "console.dashboard.open"),
        [
            (
                t(request, f"state.{s}"),
                [(open_counts.get(str(s), 0), "bar", str(open_counts.get(str(s), 0)))],
                str(open_counts.get(str(s), 0)),
            )
            for s in OrderState
            if s in OPEN_STATES
        ],
    )

    hours = queries.activation_hours_by_channel(session, since=now - timedelta(days=90))
    activation_chart = charts.rows(
        t(request, "console.dashboard.activation"),
        [
            (
                t(request, f"channel.{c}"),
                [(hours.get(str(c), (0.0, 0))[0], f"s{i}", f"{hours.get(str(c), (0.0, 0))[0]:.1f}")],
                t(
                    request,
                    "console.dashboard.hours",
                    h=f"{hours.get(str(c), (0.0, 0))[0]:.1f}",
                    n=hours.get(str(c), (0.0, 0))[1],
                ),
            )
            for i, c in enumerate(channels)
        ],
    )

    verdicts = queries.verdicts_by_kind(session, since=now - timedelta(days=30))
    verdict_chart = charts.rows(
        t(request, "console.dashboard.verdicts"),
        [
            (
                t(request, f"check.{kind}"),
                [
                    (counts.get(v, 0), css, f"{t(request, f'verdict.{v}')}: {counts.get(v, 0)}")
                    for v, css in VERDICTS
                ],
                " / ".join(str(counts.get(v, 0)) for v, _ in VERDICTS),
            )
            for kind, counts in sorted(verdicts.items())
        ],
        legend=[(css, t(request, f"verdict.{v}")) for v, css in VERDICTS],
    )

    buckets = queries.lines_by_days_left(
        session, now=now, window_days=settings.inactivity_days_before_recycling
    )
    bands = ["bad", "bad", "warn", "warn", "ok"]
    days_chart = charts.columns(
        t(request, "console.dashboard.days_left"),
        [
            (
                label,
                [
                    (
                        n,
                        bands[min(i, len(bands) - 1)],
                        t(request, "console.dashboard.days", label=label) + f": {n}",
                    )
                ],
            )
            for i, (label, n) in enumerate(buckets)
        ],
        height=200,
    )
    return page(
        request,
        settings,
        actor,
        "console/dashboard.html",
        charts=[
            ("per-day", per_day_chart),
            ("open", open_chart),
            ("activation", activation_chart),
            ("verdicts", verdict_chart),
            ("days-left", days_chart),
        ],
    )
