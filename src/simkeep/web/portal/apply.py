"""The replacement wizard (补卡): eligibility, channel and fee, photos, address and code, submission, outcome.

The wizard keeps its state in the URL and hidden fields: the channel and the references of the uploaded
photos (never their bytes; an upload can only be named by the holder who made it). Photos are posted to
paths under ``/portal/apply/``, the only portal paths allowed bodies over the general limit. The slow
checks (OCR, face match) run before the order's transaction opens, as the JSON API runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.billing import service as billing
from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.errors import DomainError
from simkeep.identity import evidence as evidence_service
from simkeep.identity.application import OnlineApplication
from simkeep.identity.documents import normalise_document_number
from simkeep.identity.service import Evidence
from simkeep.lines import repository as lines_repo
from simkeep.models import Channel, Line, OrderState, ReplacementOrder, Subscriber
from simkeep.replacements import online, workflow
from simkeep.replacements import service as orders
from simkeep.shipping.service import ADDRESS_FIELDS
from simkeep.staff import service as staff_service
from simkeep.web import i18n
from simkeep.web.deps import HolderPage
from simkeep.web.forms import Form, keep_or_discard, read_form
from simkeep.web.portal.common import (
    code_channels,
    holder_line,
    lang_of,
    page,
    place_proof_error,
    say,
    send_page_code,
)

router = APIRouter()
ONLINE = (str(Channel.ONLINE_MAIL), str(Channel.ESIM))
PHOTO_FIELDS = ("document_photo", "selfie")
ADDRESS_FORM_FIELDS = (*ADDRESS_FIELDS, "postal_code")

i18n.add(
    {
        "apply.title": ("补办 SIM 卡", "Get a replacement SIM"),
        "apply.intro": (
            "号码不变，换一张新卡。原卡在新卡激活时自动失效。",
            "Your number stays the same on a new SIM; the old SIM stops working when the new one is "
            "activated.",
        ),
        "apply.eligible": ("您可以在线申请补卡。", "You can apply online."),
        "apply.not_eligible": ("暂时不能在线补卡", "You cannot apply online now"),
        "apply.why.open_order": (
            "该号码已有一个进行中的补卡申请：{reference}。",
            "This number already has an open replacement order: {reference}.",
        ),
        "apply.why.open_order.link": ("查看该申请", "See that order"),
        "apply.why.cooldown": (
            "30 天内只能在线补卡一次。请携带身份证件到营业厅办理，或 {date} 以后再申请。",
            "One online replacement per 30 days: visit a store with your identity document, or apply "
            "after {date}.",
        ),
        "apply.why.recycled": (
            "该号码已被回收，不能补卡。",
            "This number was recycled; no new SIM can be issued for it.",
        ),
        "apply.why.lock": (
            "您开启了换卡保护，补卡前需先关闭。",
            "Your SIM-change lock is on; turn it off before applying.",
        ),
        "apply.why.lock.link": ("管理换卡保护", "Manage the lock"),
        "apply.channel": ("选择领卡方式", "How do you want the new SIM?"),
        "apply.fee": ("费用", "Fee"),
        "apply.fee_note": (
            "费用在审核通过后支付；审核未通过不收费。",
            "You pay after the application is approved; nothing is charged if it is not.",
        ),
        "apply.channel.online_mail": ("邮寄实体卡（3 到 7 天送达）", "A SIM card by mail (3 to 7 days)"),
        "apply.channel.esim": ("eSIM（无需等待邮寄）", "eSIM (no mail, no wait)"),
        "apply.channel.store": ("到营业厅办理（约 10 分钟）", "At a store (about ten minutes)"),
        "apply.steps": ("步骤", "Steps"),
        "apply.step.channel": ("领卡方式", "Channel"),
        "apply.step.photos": ("证件照和自拍", "Photos"),
        "apply.step.details": ("信息和验证码", "Details and code"),
        "apply.step.outcome": ("结果", "Outcome"),
        "apply.store.title": ("到营业厅补卡", "Get the new SIM at a store"),
        "apply.store.body": (
            "请本人携带有效身份证件原件（居民身份证或护照）到任一营业厅。"
            "营业员当面核验证件和本人，现场收费并激活新卡，约 10 分钟。",
            "Bring your original identity document (resident ID card or passport) to any store. The clerk "
            "checks it and you in person, takes the fee and activates the new SIM there: about ten minutes.",
        ),
        "apply.store.list": ("营业厅", "Stores"),
        "apply.store.none": ("暂无营业厅信息。", "No stores are listed yet."),
        "apply.photos.title": ("上传证件照和自拍", "Upload your document photo and a selfie"),
        "apply.photos.intro": (
            "我们会核对证件号码、识别证件照片，并将自拍与证件上的照片比对。"
            "照片加密保存，订单结束 30 天后删除。",
            "We check the document number, read the document photo and compare your selfie with the "
            "portrait on it. Photos are stored encrypted and deleted 30 days after the order closes.",
        ),
        "apply.document_photo": ("证件人像页照片", "Photo of the identity document"),
        "apply.document_photo.hint": (
            "拍清楚整张证件，避免反光，号码可读。",
            "The whole document, no glare, the number readable.",
        ),
        "apply.selfie": ("自拍", "Selfie"),
        "apply.selfie.hint": (
            "正对镜头，光线充足，不戴帽子和墨镜。",
            "Face the camera in good light, no hat or sunglasses.",
        ),
        "apply.camera.start": ("打开摄像头", "Open the camera"),
        "apply.camera.shoot": ("拍照", "Take the photo"),
        "apply.camera.taken": ("已拍好自拍，可以重拍。", "Selfie taken; you can take it again."),
        "apply.camera.denied": (
            "无法使用摄像头，请用下面的按钮选择或拍摄照片。",
            "The camera cannot be used; choose or take a photo with the button below.",
        ),
        "apply.camera.or": ("或者选择照片：", "Or choose a photo:"),
        "apply.photo_required": ("请选择照片。", "Choose a photo."),
        "apply.upload": ("上传并继续", "Upload and continue"),
        "apply.photos.ok": ("证件照和自拍已收到。", "Document photo and selfie received."),
        "apply.photos.again": ("重新上传照片", "Upload the photos again"),
        "apply.details.title": ("确认信息", "Your details"),
        "apply.document_number": ("证件号码", "Identity document number"),
        "apply.document_number.hint": (
            "与证件照片上的号码一致。",
            "As printed on the document in the photo.",
        ),
        "apply.address": ("收件地址", "Delivery address"),
        "apply.addr.recipient": ("收件人", "Recipient"),
        "apply.addr.phone": ("收件人电话", "Recipient's phone"),
        "apply.addr.region": ("省/直辖市/自治区", "Province or region"),
        "apply.addr.city": ("城市", "City"),
        "apply.addr.street": ("详细地址", "Street address"),
        "apply.addr.postal_code": ("邮政编码（选填）", "Postal code (optional)"),
        "apply.submit": ("提交申请", "Submit the application"),
        "apply.outcome.title": ("申请结果", "Your application"),
        "apply.outcome.reference": ("申请编号", "Order reference"),
        "apply.outcome.approved": (
            "审核已通过。请支付 {fee}，然后我们为您{next}。",
            "Approved. Pay {fee} next; then we {next}.",
        ),
        "apply.outcome.next.online_mail": ("寄出新卡", "send the new SIM"),
        "apply.outcome.next.esim": ("开通 eSIM", "issue the eSIM"),
        "apply.outcome.pay": ("去支付", "Pay now"),
        "apply.outcome.in_review": (
            "您的申请需要人工审核，通常在一个工作日内完成。结果会通过您登记的联系方式通知您。",
            "Your application needs a person to look at it, usually within a working day. We will tell "
            "you through your registered contacts.",
        ),
        "apply.outcome.rejected": ("申请未通过：{reason}", "Not approved: {reason}"),
        "apply.outcome.rejected.todo": (
            "您可以重新拍摄清晰的证件照和自拍后再次申请，或携带身份证件原件到营业厅办理。未收取任何费用。",
            "You can apply again with clear photos of the document and of yourself, or visit a store with "
            "your original identity document. Nothing was charged.",
        ),
        "apply.outcome.other": ("申请状态：{state}", "Order state: {state}"),
        "apply.outcome.order": ("查看申请详情", "See the order"),
        "apply.outcome.retry": ("重新申请", "Apply again"),
        "apply.stores": ("查看营业厅", "See the stores"),
    }
)


@dataclass(frozen=True)
class Eligibility:
    """Whether the holder may apply online, and why not."""

    reasons: list[tuple[str, dict[str, Any]]]
    online_ok: bool
    store_ok: bool


def eligibility(session: Session, settings: Settings, line: Line) -> Eligibility:
    """The refusals a submission would meet, found before anything is typed (read only)."""
    reasons: list[tuple[str, dict[str, Any]]] = []
    if lines_repo.is_recycled(line):
        return Eligibility([("recycled", {})], online_ok=False, store_ok=False)
    if line.sim_change_lock:
        reasons.append(("lock", {}))
    open_ref = session.scalar(
        select(ReplacementOrder.reference).where(ReplacementOrder.open_line_id == line.id)
    )
    if open_ref:
        reasons.append(("open_order", {"reference": open_ref}))
    blocked = bool(reasons)
    since = utcnow() - timedelta(days=settings.online_replacement_cooldown_days)
    last_online = session.scalar(
        select(func.max(ReplacementOrder.created_at)).where(
            ReplacementOrder.line_id == line.id,
            ReplacementOrder.channel.in_(list(workflow.ONLINE_CHANNELS)),
            ReplacementOrder.created_at >= since,
            ReplacementOrder.state != OrderState.REJECTED,
        )
    )
    if last_online is not None and not open_ref:
        until = last_online + timedelta(days=settings.online_replacement_cooldown_days)
        reasons.append(("cooldown", {"date": until.strftime("%Y-%m-%d")}))
    return Eligibility(reasons, online_ok=not reasons, store_ok=not blocked)


def _fees(session: Session, settings: Settings) -> dict[str, str]:
    return {
        q.channel: f"{q.amount_minor / 100:.2f} {q.currency}" for q in billing.schedule(session, settings)
    }


def _channel(value: str | None) -> str | None:
    return value if value in ONLINE else None


@router.get("/portal/apply")
def start(request: Request, session: DbSession, settings: AppSettings, actor: HolderPage) -> Response:
    """Eligibility first, then the channel with its fee."""
    line, _ = holder_line(session, actor)
    return page(
        request,
        settings,
        "portal/apply.html",
        eligible=eligibility(session, settings, line),
        fees=_fees(session, settings),
        step=1,
    )


@router.get("/portal/apply/channel")
def choose(
    _actor: HolderPage,
    channel: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """Go on with the channel chosen (a plain GET form, so it works without JavaScript)."""
    if channel == str(Channel.STORE):
        return RedirectResponse("/portal/apply/store", status_code=303)
    if _channel(channel) is None:
        return RedirectResponse("/portal/apply", status_code=303)
    return RedirectResponse(f"/portal/apply/photos?channel={channel}", status_code=303)


@router.get("/portal/apply/store")
def store(request: Request, session: DbSession, settings: AppSettings, _actor: HolderPage) -> Response:
    """At a store: what to bring, and where."""
    return page(
        request,
        settings,
        "portal/apply_store.html",
        stores=staff_service.list_stores(session),
        fee=_fees(session, settings).get(str(Channel.STORE), ""),
    )


def _photos_page(
    request: Request,
    session: Session,
    settings: Settings,
    channel: str,
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        settings,
        "portal/apply_photos.html",
        status_code=status_code,
        channel=channel,
        fee=_fees(session, settings)[channel],
        errors=errors or {},
        step=2,
    )


@router.get("/portal/apply/photos")
def photos_form(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    actor: HolderPage,
    channel: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """The document photo and the selfie (camera in the browser, or a file)."""
    chosen = _channel(channel)
    if chosen is None:
        return RedirectResponse("/portal/apply", status_code=303)
    line, _ = holder_line(session, actor)
    if not eligibility(session, settings, line).online_ok:
        return RedirectResponse("/portal/apply", status_code=303)
    return _photos_page(request, session, settings, chosen)


@router.post("/portal/apply/photos")
async def upload_photos(
    request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Keep both photos (cleaned, encrypted) and go on to the details with their references."""
    form, data = await read_form(request, settings)
    lang = lang_of(request)
    channel = _channel(form.get("channel"))
    if channel is None:
        return RedirectResponse("/portal/apply", status_code=303)
    files: dict[str, tuple[bytes, str | None]] = {}
    for name in PHOTO_FIELDS:
        item = data.get(name)
        if isinstance(item, UploadFile) and item.filename:
            content = await item.read(settings.upload_max_bytes + 1)
            if content:
                files[name] = (content, item.content_type)
                continue
        form.errors[name] = i18n.translate(lang, "apply.photo_required")
    if not form.ok:
        return _photos_page(request, session, settings, channel, errors=form.errors, status_code=422)
    refs: dict[str, str] = {}
    for name, (content, content_type) in files.items():
        try:
            row = evidence_service.store_upload(
                session, settings, actor=actor, kind=name, data=content, declared_type=content_type
            )
        except DomainError as exc:
            form.errors[name] = say(lang, exc)
            continue
        refs[name] = row.reference
    if not form.ok:
        session.rollback()
        return _photos_page(request, session, settings, channel, errors=form.errors, status_code=422)
    session.commit()
    query = urlencode({"channel": channel, **refs})
    return RedirectResponse(f"/portal/apply/details?{query}", status_code=303)


def _details_page(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    values: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    sent_to: str | None = None,
    status_code: int = 200,
) -> Response:
    line, holder = holder_line(session, actor)
    return page(
        request,
        settings,
        "portal/apply_details.html",
        status_code=status_code,
        channel=values["channel"],
        fee=_fees(session, settings)[values["channel"]],
        values=values,
        errors=errors or {},
        sent_to=sent_to,
        channels=code_channels(line, holder),
        address_fields=ADDRESS_FORM_FIELDS,
        step=3,
    )


def _saved_address(holder: Subscriber) -> dict[str, str]:
    saved = holder.delivery_address or {}
    return {f"addr_{f}": str(saved.get(f) or "") for f in ADDRESS_FORM_FIELDS}


@router.get("/portal/apply/details")
def details_form(
    *,
    request: Request,
    session: DbSession,
    settings: AppSettings,
    actor: HolderPage,
    channel: Annotated[str, Query(max_length=20)] = "",
    document_photo: Annotated[str, Query(max_length=16)] = "",
    selfie: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    """The document number, the delivery address (mail) and the one-time code."""
    chosen = _channel(channel)
    if chosen is None or not document_photo or not selfie:
        return RedirectResponse("/portal/apply", status_code=303)
    _, holder = holder_line(session, actor)
    values = {"channel": chosen, "document_photo": document_photo, "selfie": selfie, **_saved_address(holder)}
    return _details_page(request, session, settings, actor, values)


def _wizard_values(form: Form) -> dict[str, str] | None:
    channel = _channel(form.get("channel"))
    if channel is None or not form.get("document_photo") or not form.get("selfie"):
        return None
    keep = ("document_photo", "selfie", "document_number", *(f"addr_{f}" for f in ADDRESS_FORM_FIELDS))
    return {"channel": channel, **{k: form.get(k) for k in keep}}


@router.post("/portal/apply/code")
async def details_code(
    request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Send the code for the application; the form comes back as typed."""
    form, _ = await read_form(request, settings)
    values = _wizard_values(form)
    if values is None:
        return RedirectResponse("/portal/apply", status_code=303)
    sent = send_page_code(
        session, settings, actor=actor, purpose="replacement.submit", form=form, lang=lang_of(request)
    )
    return _details_page(
        request,
        session,
        settings,
        actor,
        values,
        errors=form.errors,
        sent_to=sent,
        status_code=200 if sent else 422,
    )


def _submit(
    *,
    session: Session,
    settings: Settings,
    actor: Actor,
    channel: str,
    application: OnlineApplication,
    address: dict[str, str] | None,
) -> str:
    """Check, submit and commit (in a worker thread: the checks take most of a second)."""
    assert actor.line_id is not None
    checks = online.checks_outside_transaction(
        session, settings, line_id=actor.line_id, application=application
    )
    line, _ = holder_line(session, actor)
    order = orders.submit(
        session,
        settings,
        actor=actor,
        msisdn=line.msisdn,
        channel=Channel(channel),
        evidence=Evidence(),
        delivery_address=address,
        application=application,
        checks=checks,
    )
    session.commit()
    return order.reference


@router.post("/portal/apply/submit")
async def submit(request: Request, session: DbSession, settings: AppSettings, actor: HolderPage) -> Response:
    """Submit the application: approved, in review or rejected, the outcome page says which."""
    form, _ = await read_form(request, settings)
    lang = lang_of(request)
    values = _wizard_values(form)
    if values is None:
        return RedirectResponse("/portal/apply", status_code=303)
    channel = values["channel"]
    form.require(lang, "document_number", "code")
    address = None
    if channel == str(Channel.ONLINE_MAIL):
        form.require(lang, *(f"addr_{f}" for f in ADDRESS_FIELDS))
        address = {f: form.get(f"addr_{f}") for f in ADDRESS_FORM_FIELDS if form.get(f"addr_{f}")}
    _, holder = holder_line(session, actor)
    if form.get("document_number"):
        try:
            normalise_document_number(str(holder.document_type), form.get("document_number"))
        except DomainError as exc:
            form.errors["document_number"] = say(lang, exc)
    if form.ok:
        application = OnlineApplication(
            form.get("document_number"), values["document_photo"], values["selfie"], form.get("code")
        )
        try:
            reference = await run_in_threadpool(
                partial(
                    _submit,
                    session=session,
                    settings=settings,
                    actor=actor,
                    channel=channel,
                    application=application,
                    address=address,
                )
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            _place_submit_error(form.errors, exc, lang)
        else:
            return RedirectResponse(f"/portal/apply/outcome/{reference}", status_code=303)
    return _details_page(request, session, settings, actor, values, errors=form.errors, status_code=422)


def _place_submit_error(errors: dict[str, str], exc: DomainError, lang: str) -> None:
    if exc.code == "ADDRESS_INVALID":
        missing = exc.details.get("missing") or [exc.details.get("field", "region")]
        for name in missing:
            errors[f"addr_{name}"] = say(lang, exc)
    elif exc.code in ("EVIDENCE_NOT_FOUND", "EVIDENCE_PURGED"):
        errors["photos"] = say(lang, exc)
    else:
        place_proof_error(errors, exc, lang)


@router.get("/portal/apply/outcome/{reference}")
def outcome(
    reference: str, request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Approved (pay next), in review, or rejected with what to do."""
    order = orders.get_order(session, actor=actor, reference=reference[:16])
    return page(
        request,
        settings,
        "portal/apply_outcome.html",
        order=order,
        fee=f"{order.fee_amount_minor / 100:.2f} {order.fee_currency}",
        step=4,
    )
