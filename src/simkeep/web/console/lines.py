"""Lines and subscribers: search by number, ICCID or name; a line's SIM changes, orders, loss reports and
audit trail. Names and numbers are masked until a reveal, which is audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from simkeep.audit.service import entries_for, record
from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.identifiers import iccid_problem, normalise_msisdn
from simkeep.keepalive.service import reminder_history
from simkeep.lines import repository as lines_repo
from simkeep.lines.errors import LineNotFound
from simkeep.lines.service import keepalive_status
from simkeep.masking import mask_document, mask_iccid, mask_msisdn
from simkeep.models import Line, StaffRole
from simkeep.web import i18n
from simkeep.web.console import queries
from simkeep.web.console.common import mask_name, page
from simkeep.web.console.menu import register
from simkeep.web.deps import require_staff_page
from simkeep.web.forms import Form, message_for, read_form
from simkeep.web.templating import language_of

router = APIRouter()
register("/console/lines", "console.lines.menu", StaffRole.CLERK, StaffRole.REVIEWER)
LinesPage = Annotated[Actor, Depends(require_staff_page(StaffRole.CLERK, StaffRole.REVIEWER))]

i18n.add(
    {
        "console.line.reminders": ("回收提醒记录", "Recycling reminders sent"),
        "console.line.reminder": (
            "剩 {n} 天时提醒（截止 {deadline}）",
            "At {n} days left (deadline {deadline})",
        ),
        "console.lines.menu": ("号码查询", "Lines"),
        "console.lines.title": ("号码与机主", "Lines and subscribers"),
        "console.lines.q": ("号码、ICCID 或机主姓名", "Number, ICCID or holder's name"),
        "console.lines.q_hint": (
            "号码含国家代码；ICCID 19 或 20 位；姓名按开头匹配。",
            "Number with country code; ICCID of 19 or 20 digits; names match from the start.",
        ),
        "console.lines.search": ("搜索", "Search"),
        "console.lines.none": ("没有找到。", "Nothing found."),
        "console.lines.results": ("搜索结果", "Results"),
        "console.lines.open": ("查看", "Open"),
        "console.line.title": ("号码 {msisdn}", "Line {msisdn}"),
        "console.line.facts": ("号码信息", "The line"),
        "console.line.sim": ("当前 SIM 卡", "Current SIM"),
        "console.line.lock": ("换卡锁", "SIM-change lock"),
        "console.line.on": ("开启", "On"),
        "console.line.off": ("关闭", "Off"),
        "console.line.sim_changes": ("换卡记录", "SIM changes"),
        "console.line.orders": ("补卡申请", "Replacement orders"),
        "console.line.losses": ("挂失记录", "Loss reports"),
        "console.line.audit": ("审计记录", "Audit entries"),
        "console.line.when": ("时间", "When"),
        "console.line.old": ("旧卡", "Old SIM"),
        "console.line.new": ("新卡", "New SIM"),
        "console.line.by": ("操作人", "By"),
        "console.line.action": ("操作", "Action"),
        "console.line.reason": ("原因", "Reason"),
        "console.line.empty": ("无", "None"),
        "console.line.last_activity": ("最近计费活动", "Last chargeable activity"),
        "sim_change.initial": ("开户", "Initial"),
        "sim_change.import": ("迁移导入", "Import"),
        "sim_change.store": ("营业厅", "Store"),
        "sim_change.online_mail": ("线上邮寄", "Online, by mail"),
        "sim_change.esim": ("eSIM", "eSIM"),
        "loss.open": ("挂失中", "Open"),
        "loss.lifted": ("已解挂", "Lifted"),
        "loss.closed_by_replacement": ("已补卡", "Closed by replacement"),
    }
)


def _classify(q: str) -> tuple[str | None, str | None, str | None]:
    """(msisdn, iccid, name): what the search text is."""
    compact = q.replace(" ", "").replace("-", "")
    if compact.isdigit() and len(compact) in (19, 20) and iccid_problem(compact) is None:
        return None, compact, None
    if compact.startswith("+") or compact.isdigit():
        return normalise_msisdn(compact if compact.startswith("+") else "+" + compact), None, None
    return None, None, q


@router.get("/console/lines")
def search(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    actor: LinesPage,
    q: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Search lines."""
    q = q.strip()
    form = Form({"q": q})
    results: list[tuple[Line, str, str]] = []
    if q:
        try:
            msisdn, iccid, name = _classify(q)
        except DomainError as exc:
            form.errors["q"] = message_for(language_of(request), exc, prefix="ccode.")
        else:
            for line in queries.search_lines(session, msisdn=msisdn, iccid=iccid, name=name):
                holder = lines_repo.holder_of(session, line)
                results.append(
                    (line, mask_msisdn(line.msisdn), mask_name(holder.real_name) if holder else "—")
                )
    return page(
        request,
        settings,
        actor,
        "console/lines.html",
        status_code=422 if form.errors else 200,
        errors=form.errors,
        values=form.values,
        searched=bool(q),
        results=results,
    )


def _line_page(
    request: Request, session: Session, settings: Settings, actor: Actor, line_id: int, *, revealed: bool
) -> Response:
    line = lines_repo.get(session, line_id)
    if line is None:
        raise LineNotFound("No such line.")
    holder = lines_repo.holder_of(session, line)
    assert holder is not None
    changes = lines_repo.sim_changes(session, line.id)
    sim_ids = {c.new_sim_id for c in changes} | {c.old_sim_id for c in changes if c.old_sim_id}
    if line.sim_id:
        sim_ids.add(line.sim_id)
    sims = queries.sims_by_id(session, sim_ids)
    current = sims.get(line.sim_id) if line.sim_id else None
    line_orders = queries.orders_of_line(session, line.id)
    return page(
        request,
        settings,
        actor,
        "console/line.html",
        line=line,
        msisdn=line.msisdn if revealed else mask_msisdn(line.msisdn),
        name=holder.real_name if revealed else mask_name(holder.real_name),
        document=mask_document(holder.document_number_last4),
        revealed=revealed,
        keepalive=keepalive_status(line, settings) if line.status != "recycled" else None,
        reminders=reminder_history(session, line.id),
        current=current,
        changes=[
            (
                c,
                mask_iccid(sims[c.old_sim_id].iccid) if c.old_sim_id in sims else "—",
                mask_iccid(sims[c.new_sim_id].iccid) if c.new_sim_id in sims else "—",
            )
            for c in changes
        ],
        orders=line_orders,
        order_refs={o.id: o.reference for o in line_orders},
        losses=queries.loss_reports(session, line.id),
        audit=entries_for(session, subject_type="line", subject_id=line.id, limit=100),
    )


@router.get("/console/lines/{line_id}")
def line_page(
    line_id: int, request: Request, session: DbSession, settings: AppSettings, actor: LinesPage
) -> Response:
    """A line: status, days left, SIM changes, orders, loss reports and audit entries."""
    return _line_page(request, session, settings, actor, line_id, revealed=False)


@router.post("/console/lines/{line_id}/reveal")
async def reveal(
    line_id: int, request: Request, session: DbSession, settings: AppSettings, actor: LinesPage
) -> Response:
    """Show the holder's full name and number, and audit that they were shown."""
    await read_form(request, settings)
    if lines_repo.get(session, line_id) is None:
        raise LineNotFound("No such line.")
    record(
        session,
        actor=actor.label,
        action="personal_data.revealed",
        subject_type="line",
        subject_id=line_id,
        data={"fields": ["real_name", "msisdn"]},
    )
    session.commit()
    return _line_page(request, session, settings, actor, line_id, revealed=True)
