"""The portal's home: the line, its SIM, the days before the number would be recycled, the lock, orders."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from simkeep.auth.deps import AppSettings, DbSession
from simkeep.db.base import utcnow
from simkeep.keepalive.service import reminder_history
from simkeep.lines import repository as lines_repo
from simkeep.lines.service import keepalive_status
from simkeep.loss.service import open_report
from simkeep.models import Line
from simkeep.replacements import service as orders
from simkeep.web import i18n
from simkeep.web.deps import HolderPage
from simkeep.web.templating import render

router = APIRouter()

i18n.add(
    {
        "home.title": ("我的号码", "My number"),
        "home.status": ("状态", "Status"),
        "home.sim": ("SIM 卡", "SIM"),
        "home.days_left": ("距号码回收还有 {days} 天", "{days} days before the number would be recycled"),
        "home.recycle_on": ("如无使用，将于 {date} 回收", "It would be recycled on {date} without use"),
        "home.keepalive_hint": (
            "拨打一次电话、发送一条短信、使用一次流量或充值即可延长。",
            "One call, one SMS, one data session or a top-up keeps it alive.",
        ),
        "home.last_activity": ("最近使用", "Last activity"),
        "home.reminders": ("已发送的提醒", "Reminders sent"),
        "home.reminder": ("{date}：剩 {n} 天时的提醒", "{date}: reminder at {n} days left"),
        "home.lock": ("换卡保护", "SIM-change lock"),
        "home.lock.on": ("已开启：任何补换卡都会被拒绝", "On: every SIM change is refused"),
        "home.lock.off": ("未开启", "Off"),
        "home.orders": ("我的补卡申请", "My replacement orders"),
        "home.no_orders": ("暂无申请", "No orders"),
        "status.active": ("正常", "Active"),
        "status.suspended": ("已挂失停机", "Suspended (reported lost)"),
        "status.recycled": ("已回收", "Recycled"),
        "home.actions": ("我要办理", "What I can do"),
        "home.apply": ("补办 SIM 卡", "Get a replacement SIM"),
        "home.report_loss": ("挂失", "Report the SIM lost"),
        "home.reinstate": ("解除挂失", "Lift the suspension"),
        "home.contacts": ("修改联系方式", "Update contact details"),
    }
)


@router.get("/portal")
def home(request: Request, session: DbSession, settings: AppSettings, actor: HolderPage) -> Response:
    """What the holder sees first."""
    line = session.get(Line, actor.line_id)
    assert line is not None
    keepalive = keepalive_status(line, settings)
    sim = lines_repo.current_sim(session, line)
    return render(
        request,
        settings,
        "portal/home.html",
        area="portal",
        area_title="app.portal",
        signed_in=True,
        line=line,
        sim=sim,
        keepalive=keepalive,
        reminders=reminder_history(session, line.id, limit=5),
        loss_report=open_report(session, line.id),
        orders=orders.list_orders(session, actor=actor, limit=20),
        soon=utcnow() + timedelta(days=30),
    )
