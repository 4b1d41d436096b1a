"""A holder's replacement order: its steps as a timeline, the parcel, and paying, cancelling, activating."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.esim import qr
from simkeep.esim import service as esim_service
from simkeep.models import Channel, PaymentMethod, ReplacementOrder
from simkeep.network.operations import commit_and_apply
from simkeep.replacements import activation, workflow
from simkeep.replacements import service as orders
from simkeep.replacements.errors import OrderNotFound
from simkeep.shipping import service as shipping
from simkeep.web import i18n
from simkeep.web.deps import HolderPage
from simkeep.web.forms import keep_or_discard, read_form
from simkeep.web.portal.common import lang_of, page, say

router = APIRouter()

i18n.add(
    {
        "order.title": ("补卡申请 {reference}", "Replacement order {reference}"),
        "order.missing": ("未找到该申请。", "Order not found."),
        "order.channel": ("方式", "Channel"),
        "order.fee": ("费用", "Fee"),
        "order.waived": ("已免除", "waived"),
        "order.expires": ("激活截止", "Activate by"),
        "order.reason": ("说明", "Note"),
        "order.timeline": ("进度", "Progress"),
        "order.parcel": ("包裹", "Parcel"),
        "order.tracking": ("运单号 {carrier} {number}", "Tracking {carrier} {number}"),
        "order.eta": ("预计送达：{date}", "Expected delivery: {date}"),
        "order.no_parcel": (
            "新卡寄出后，这里会显示包裹进度。",
            "The parcel's journey shows here once the SIM is sent.",
        ),
        "parcel.label_created": ("已下单", "Label created"),
        "parcel.in_transit": ("运输中", "In transit"),
        "parcel.out_for_delivery": ("派送中", "Out for delivery"),
        "parcel.delivered": ("已签收", "Delivered"),
        "parcel.returned": ("已退回", "Returned"),
        "order.pay": ("支付费用", "Pay the fee"),
        "order.pay.intro": (
            "在线支付 {fee} 后，填写支付流水号。",
            "Pay {fee} online, then enter the payment reference.",
        ),
        "order.pay.reference": ("支付流水号", "Payment reference"),
        "order.pay.submit": ("确认已支付", "Confirm the payment"),
        "order.activate": ("激活新卡", "Activate the new SIM"),
        "order.activate.intro": (
            "插入新卡后，输入新卡 ICCID（卡上印的 19 到 20 位数字）的最后 6 位。"
            "激活后号码转到新卡，原卡立即失效。",
            "With the new SIM in your phone, enter the last six digits of its ICCID (the 19 or 20 digits "
            "printed on it). The number then moves to it and the old SIM stops working.",
        ),
        "order.activate.digits": ("ICCID 最后 6 位", "Last six ICCID digits"),
        "order.activate.submit": ("激活", "Activate"),
        "order.cancel": ("取消申请", "Cancel the order"),
        "order.cancel.reason": ("原因（选填）", "Reason (optional)"),
        "order.cancel.submit": ("取消申请", "Cancel the order"),
        "order.esim": ("eSIM 激活码", "eSIM activation code"),
        "order.esim.none": (
            "eSIM 激活码（二维码）将在开通后显示在这里。",
            "The eSIM activation code (QR code) will show here once the profile is issued.",
        ),
        "order.esim.qr_alt": ("eSIM 激活码二维码", "QR code of the eSIM activation code"),
        "order.esim.text": ("激活码（手动输入）", "Activation code (to type in)"),
        "order.esim.png": ("下载二维码图片（PNG）", "Download the QR code (PNG)"),
        "order.esim.how": ("安装步骤", "How to install"),
        "order.esim.step1": (
            "在新手机上打开“设置 → 蜂窝网络/移动网络 → 添加 eSIM”，选择“使用二维码”。",
            "On the phone, open Settings → Mobile/Cellular → Add eSIM and choose “Use QR code”.",
        ),
        "order.esim.step2": (
            "扫描上面的二维码；无法扫描时，选择手动输入并填写上面的激活码。",
            "Scan the QR code above; if you cannot scan it, choose to enter it manually and type the "
            "activation code.",
        ),
        "order.esim.step3": (
            "手机提示输入确认码时，输入{via}收到的 8 位确认码。",
            "When the phone asks for a confirmation code, type the 8-digit code we sent {via}.",
        ),
        "order.esim.step4": (
            "安装完成后，号码自动转到 eSIM，原卡同时失效；号码不变。",
            "Once it is installed your number moves to the eSIM and the old SIM stops working; the number "
            "stays the same.",
        ),
        "order.esim.step4_holder": (
            "安装完成后，回到本页输入 eSIM 的 ICCID 最后 6 位完成激活；号码不变。",
            "Once it is installed, come back to this page and enter the last six digits of the eSIM's "
            "ICCID to activate it; the number stays the same.",
        ),
        "order.esim.via.sms": ("通过短信发送到您登记的联系电话", "by SMS to your registered contact number"),
        "order.esim.via.email": ("通过电子邮件发送到您登记的邮箱", "by e-mail to your registered address"),
        "order.esim.via.line_sms": ("通过短信发送到本号码", "by SMS to this number"),
        "order.esim.secret": (
            "激活码只能使用一次，请勿截图分享给他人。",
            "The activation code works once: do not share it or a screenshot of it.",
        ),
        "order.esim.installed": (
            "eSIM 已安装，号码正在转到 eSIM。",
            "The eSIM is installed; your number is moving to it.",
        ),
        "order.esim.failed": (
            "eSIM 开通遇到问题，我们的工作人员正在处理，您也可以取消申请。",
            "Something went wrong issuing your eSIM; our staff are on it. You may also cancel the order.",
        ),
        "order.done.pay": ("已收到付款。", "Payment received."),
        "order.done.activate": ("新卡已激活，号码不变。", "The new SIM is active; your number is unchanged."),
        "order.done.cancel": ("申请已取消。", "The order is cancelled."),
        "order.digits_invalid": ("请输入 6 位数字。", "Enter six digits."),
        "pcode.ACTOR_NOT_ALLOWED": ("此操作不能由您完成。", "This step is not yours to take."),
        "pcode.ESIM_PROFILE_NOT_READY": (
            "eSIM 尚未安装到手机上，安装完成后才能激活。",
            "The eSIM is not installed on your phone yet; it can be activated once it is.",
        ),
    }
)


def _order_page(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    order: ReplacementOrder,
    *,
    errors: dict[str, str] | None = None,
    flash: str | None = None,
    status_code: int = 200,
) -> Response:
    activate_step = "activate_delivered" if order.channel == Channel.ONLINE_MAIL else "activate"
    esim = esim_service.holder_view(session, order) if order.channel == Channel.ESIM else None
    can_activate = workflow.allowed(order, activate_step, actor)
    if order.channel == Channel.ESIM:  # the SM-DP+'s report activates, unless the holder is to confirm
        can_activate = can_activate and settings.esim_activate_on == "holder" and esim is not None
        can_activate = can_activate and esim is not None and esim.activation_code is not None
    return page(
        request,
        settings,
        "portal/order.html",
        status_code=status_code,
        order=order,
        fee=f"{order.fee_amount_minor / 100:.2f} {order.fee_currency}",
        events=orders.timeline(session, order),
        parcels=shipping.journey(session, order),
        eta=shipping.expected_delivery(session, order),
        can_pay=workflow.allowed(order, "record_payment", actor),
        can_activate=can_activate,
        can_cancel=workflow.allowed(order, "cancel", actor),
        esim=esim,
        activate_on=settings.esim_activate_on,
        errors=errors or {},
        flash=flash,
    )


def _not_found(request: Request, settings: Settings) -> Response:
    return page(request, settings, "portal/order_missing.html", status_code=404)


@router.get("/portal/orders/{reference}")
def show(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """The order, its progress and what the holder can do next."""
    try:
        order = orders.get_order(session, actor=actor, reference=reference[:16])
    except OrderNotFound:
        return _not_found(request, settings)
    done = request.query_params.get("done")
    flash = (
        i18n.translate(lang_of(request), f"order.done.{done}")
        if done in ("pay", "activate", "cancel")
        else None
    )
    return _order_page(request, session, settings, actor, order, flash=flash)


async def _act(
    request: Request, session: Session, settings: Settings, actor: Actor, *, reference: str, step: str
) -> Response:
    form, _ = await read_form(request, settings)
    lang = lang_of(request)
    try:
        order = orders.get_order(session, actor=actor, reference=reference[:16])
    except OrderNotFound:
        return _not_found(request, settings)
    field = {"pay": "payment_reference", "activate": "iccid_digits", "cancel": "reason"}[step]
    if step == "pay":
        form.require(lang, field)
    if step == "activate" and not (len(form.get(field)) == 6 and form.get(field).isdigit()):
        form.errors[field] = i18n.translate(lang, "order.digits_invalid")
    if form.ok:
        try:
            if step == "pay":
                orders.pay(
                    session,
                    actor=actor,
                    reference=order.reference,
                    method=PaymentMethod.ONLINE,
                    payment_reference=form.get(field),
                )
            elif step == "activate":
                activation.activate(
                    session, settings, actor=actor, reference=order.reference, iccid_digits=form.get(field)
                )
            else:
                orders.cancel(session, actor=actor, reference=order.reference, reason=form.get(field))
        except DomainError as exc:
            keep_or_discard(session, exc)
            form.errors[field if exc.code not in ("TRANSITION_NOT_ALLOWED",) else "_form"] = say(lang, exc)
        else:
            commit_and_apply(session, settings)
            return RedirectResponse(f"/portal/orders/{order.reference}?done={step}", status_code=303)
    order = orders.get_order(session, actor=actor, reference=order.reference)
    return _order_page(request, session, settings, actor, order, errors=form.errors, status_code=422)


@router.get("/portal/orders/{reference}/esim.{kind}")
def esim_qr(
    reference: str,
    kind: str,
    *,
    request: Request,
    session: DbSession,
    settings: AppSettings,
    actor: HolderPage,
) -> Response:
    """The QR code of the order's eSIM activation code (PNG or SVG), for its holder only."""
    try:
        order = orders.get_order(session, actor=actor, reference=reference[:16])
    except OrderNotFound:
        return _not_found(request, settings)
    view = esim_service.holder_view(session, order) if order.channel == Channel.ESIM else None
    if kind not in ("png", "svg") or view is None or view.activation_code is None:
        return _not_found(request, settings)
    headers = {"Cache-Control": "no-store"}  # the code is the holder's secret: no shared caches
    if kind == "png":
        return Response(qr.qr_png(view.activation_code), media_type="image/png", headers=headers)
    return Response(qr.qr_svg(view.activation_code), media_type="image/svg+xml", headers=headers)


@router.post("/portal/orders/{reference}/pay")
async def pay(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Record the online payment by its reference."""
    return await _act(request, session, settings, actor, reference=reference, step="pay")


@router.post("/portal/orders/{reference}/activate")
async def activate(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Activate the new SIM with the last six digits of its ICCID."""
    return await _act(request, session, settings, actor, reference=reference, step="activate")


@router.post("/portal/orders/{reference}/cancel")
async def cancel(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Cancel the order (a refund is recorded when one is owed)."""
    return await _act(request, session, settings, actor, reference=reference, step="cancel")
