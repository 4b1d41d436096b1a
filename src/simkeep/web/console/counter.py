"""The store counter (营业厅): a replacement SIM in a few screens, by a clerk with the holder present.

Find the line; record the in-person document check; take the fee in cash or waive it; scan the new SIM from
this store's stock; activate. Each step calls the replacement services as the JSON API does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.esim import service as esim_service
from simkeep.identity.service import Evidence
from simkeep.lines import repository as lines_repo
from simkeep.lines.service import keepalive_status, line_for_actor
from simkeep.masking import mask_document
from simkeep.models import Channel, Line, OrderState, PaymentMethod, ReplacementOrder, Sim, StaffRole
from simkeep.network.operations import commit_and_apply
from simkeep.replacements import activation
from simkeep.replacements import service as orders
from simkeep.web import i18n
from simkeep.web.console.common import note_refusal, page, t
from simkeep.web.console.menu import register
from simkeep.web.deps import ClerkPage
from simkeep.web.forms import Form, keep_or_discard, read_form
from simkeep.web.templating import language_of

router = APIRouter()
register("/console/counter", "console.counter.menu", StaffRole.CLERK)

i18n.add(
    {
        "console.counter.menu": ("柜台补卡", "Store counter"),
        "console.counter.title": ("柜台补卡", "Replacement at the counter"),
        "console.counter.find": ("查找号码", "Find the line"),
        "console.counter.search": ("查找", "Find"),
        "console.counter.line": ("号码信息", "The line"),
        "console.counter.holder": ("机主", "Holder"),
        "console.counter.document": ("登记证件", "Registered document"),
        "console.counter.status": ("状态", "Status"),
        "console.counter.days_left": ("距回收剩余", "Days before recycling"),
        "console.counter.days": ("{n} 天", "{n} days"),
        "console.counter.open_order": ("该号码已有进行中的申请：", "This line has an open order:"),
        "console.counter.continue": ("继续办理", "Continue"),
        "console.counter.check": ("核验证件（本人到场）", "Check the document in person"),
        "console.counter.doc_number": ("证件号码（照证件原件输入）", "Document number (typed from the card)"),
        "console.counter.doc_hint": (
            "查看证件原件，输入上面的号码。",
            "Look at the original document and type the number on it.",
        ),
        "console.counter.face": (
            "我已将本人面部与证件照片比对，确认为同一人",
            "I compared the face with the document's portrait: same person",
        ),
        "console.counter.face_required": (
            "请先比对本人面部与证件照片。",
            "Compare the face with the document's portrait first.",
        ),
        "console.counter.start": ("核验并开始补卡", "Verify and start the replacement"),
        "console.counter.order": ("补卡申请 {ref}", "Replacement {ref}"),
        "console.counter.step.check": ("核验身份", "Identity"),
        "console.counter.step.fee": ("收费", "Fee"),
        "console.counter.step.sim": ("新卡", "New SIM"),
        "console.counter.step.activate": ("激活", "Activate"),
        "console.counter.fee": ("补卡费用", "Replacement fee"),
        "console.counter.cash": ("已收取现金", "Cash received"),
        "console.counter.waive": ("减免费用", "Waive the fee"),
        "console.counter.waive_reason": ("减免原因", "Reason for the waiver"),
        "console.counter.iccid": ("新卡 ICCID（扫码或输入）", "New SIM's ICCID (scan or type)"),
        "console.counter.iccid_hint": (
            "本营业厅库存中的空白卡，19 或 20 位。",
            "A blank SIM from this store's stock, 19 or 20 digits.",
        ),
        "console.counter.assign": ("使用这张卡", "Use this SIM"),
        "console.counter.new_sim": ("新卡", "New SIM"),
        "console.counter.activate_hint": (
            "激活后号码立即转到新卡，旧卡同时停止使用。",
            "On activation the number moves to the new SIM and the old SIM stops working at once.",
        ),
        "console.counter.activate": ("激活新卡", "Activate the new SIM"),
        "console.counter.done": ("补卡完成", "Replacement done"),
        "console.counter.done_text": (
            "号码 {msisdn} 现已在新卡（ICCID 尾号 {last4}）上使用。号码不变。",
            "The number {msisdn} now works on the new SIM (ICCID ending {last4}). The number is unchanged.",
        ),
        "console.counter.next": ("办理下一位", "Serve the next holder"),
        "console.counter.closed": ("此申请已结束：{state}", "This order is closed: {state}"),
        "console.counter.waived": ("已减免", "Waived"),
        "console.esim.title": ("eSIM 配置文件", "eSIM profile"),
        "esim.state.requested": ("待订购", "requested"),
        "esim.state.allocated": ("已预留", "allocated"),
        "esim.state.confirmed": ("已确认", "confirmed"),
        "esim.state.released": ("已发放激活码", "released"),
        "esim.state.downloaded": ("已下载", "downloaded"),
        "esim.state.installed": ("已安装", "installed"),
        "esim.state.enabled": ("已启用", "enabled"),
        "esim.state.deleted": ("已删除", "deleted"),
        "esim.state.cancelled": ("已取消", "cancelled"),
        "esim.state.error": ("出错", "error"),
        "console.esim.state": ("状态", "State"),
        "console.esim.smdp": ("SM-DP+ 地址", "SM-DP+ address"),
        "console.esim.error": ("SM-DP+ 错误", "SM-DP+ error"),
        "console.esim.hint": (
            "处理后用 `simkeep esim retry {ref}` 重试，或取消申请。",
            "Once the cause is fixed, retry with `simkeep esim retry {ref}`, or cancel the order.",
        ),
        "line.status.active": ("正常", "Active"),
        "line.status.suspended": ("已停机（挂失）", "Suspended"),
        "line.status.recycled": ("已回收", "Recycled"),
    }
)

STEPS = ("check", "fee", "sim", "activate")
STEP_OF = {
    OrderState.AWAITING_PAYMENT: 1,
    OrderState.PAID: 2,
    OrderState.SIM_ASSIGNED: 3,
    OrderState.ACTIVATED: 4,
}


def _line_page(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    *,
    msisdn: str,
    form: Form | None = None,
    status_code: int = 200,
) -> Response:
    form = form or Form({"msisdn": msisdn})
    line: Line | None = None
    if msisdn and "msisdn" not in form.errors:
        try:
            line = line_for_actor(session, actor=actor, msisdn=msisdn)
        except DomainError as exc:
            note_refusal(request, form, exc, field="msisdn")
            status_code = 422
    context: dict[str, object] = {"line": None}
    if line is not None:
        holder = lines_repo.holder_of(session, line)
        assert holder is not None
        open_order = session.scalar(select(ReplacementOrder).where(ReplacementOrder.open_line_id == line.id))
        context = {
            "line": line,
            "holder_name": holder.real_name,
            "document": mask_document(holder.document_number_last4),
            "keepalive": keepalive_status(line, settings),
            "open_order": open_order,
            "may_continue": open_order is not None
            and open_order.channel == Channel.STORE
            and open_order.store_id == actor.store_id,
        }
    return page(
        request,
        settings,
        actor,
        "console/counter.html",
        status_code=status_code,
        errors=form.errors,
        values=form.values,
        **context,
    )


@router.get("/console/counter")
def counter(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    actor: ClerkPage,
    msisdn: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    """Find the line by number; then the in-person check form."""
    return _line_page(request, session, settings, actor, msisdn=msisdn.strip())


@router.post("/console/counter/orders")
async def start(request: Request, session: DbSession, settings: AppSettings, actor: ClerkPage) -> Response:
    """Record the in-person document check and open the store order."""
    form, _ = await read_form(request, settings)
    form.require(language_of(request), "document_number")
    if form.get("face_checked") != "yes":
        form.errors["face_checked"] = t(request, "console.counter.face_required")
    if form.ok:
        try:
            order = orders.submit(
                session,
                settings,
                actor=actor,
                msisdn=form.get("msisdn"),
                channel=Channel.STORE,
                evidence=Evidence(in_person_document_number=form.get("document_number")),
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            field = "document_number" if exc.code in ("PROOF_FAILED", "PROOF_MISSING") else "_form"
            note_refusal(request, form, exc, field=field)
        else:
            session.commit()
            return RedirectResponse(f"/console/counter/orders/{order.reference}", status_code=303)
    form.values.pop("document_number", None)
    return _line_page(
        request, session, settings, actor, msisdn=form.get("msisdn"), form=form, status_code=422
    )


def _order_page(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    reference: str,
    *,
    form: Form | None = None,
    status_code: int = 200,
) -> Response:
    order = orders.get_order(session, actor=actor, reference=reference)
    line = session.get(Line, order.line_id)
    sim = session.get(Sim, order.new_sim_id) if order.new_sim_id else None
    assert line is not None
    form = form or Form({})
    return page(
        request,
        settings,
        actor,
        "console/counter_order.html",
        status_code=status_code,
        order=order,
        line=line,
        new_sim=sim,
        steps=STEPS,
        step=STEP_OF.get(order.state, 0),
        fee=f"{order.fee_amount_minor / 100:.2f} {order.fee_currency}",
        esim=esim_service.staff_view(session, order) if order.channel == Channel.ESIM else None,
        errors=form.errors,
        values=form.values,
    )


@router.get("/console/counter/orders/{reference}")
def order_page(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: ClerkPage
) -> Response:
    """The order's next step at the counter."""
    return _order_page(request, session, settings, actor, reference)


async def _step(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    reference: str,
    *,
    run: Callable[[Form], None],
    field: str = "_form",
    required: tuple[str, ...] = (),
) -> Response:
    form, _ = await read_form(request, settings)
    form.require(language_of(request), *required)
    if form.ok:
        try:
            run(form)
        except DomainError as exc:
            keep_or_discard(session, exc)
            note_refusal(request, form, exc, field=field)
        else:
            commit_and_apply(session, settings)
            return RedirectResponse(f"/console/counter/orders/{reference}", status_code=303)
    return _order_page(request, session, settings, actor, reference, form=form, status_code=422)


@router.post("/console/counter/orders/{reference}/payment")
async def pay(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: ClerkPage
) -> Response:
    """The fee was taken in cash."""

    def run(_form: Form) -> None:
        orders.pay(
            session, actor=actor, reference=reference, method=PaymentMethod.CASH, payment_reference=None
        )

    return await _step(request, session, settings, actor, reference, run=run)


@router.post("/console/counter/orders/{reference}/waiver")
async def waive(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: ClerkPage
) -> Response:
    """The fee is waived, with a reason."""

    def run(form: Form) -> None:
        orders.waive(session, actor=actor, reference=reference, reason=form.get("reason"))

    return await _step(
        request, session, settings, actor, reference, run=run, field="reason", required=("reason",)
    )


@router.post("/console/counter/orders/{reference}/sim")
async def assign(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: ClerkPage
) -> Response:
    """The scanned SIM, from this store's stock."""

    def run(form: Form) -> None:
        orders.assign_sim(session, actor=actor, reference=reference, iccid=form.get("iccid"))

    return await _step(
        request, session, settings, actor, reference, run=run, field="iccid", required=("iccid",)
    )


@router.post("/console/counter/orders/{reference}/activation")
async def activate(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: ClerkPage
) -> Response:
    """The number moves to the new SIM; the old SIM stops working."""

    def run(_form: Form) -> None:
        activation.activate(session, settings, actor=actor, reference=reference)

    return await _step(request, session, settings, actor, reference, run=run)
