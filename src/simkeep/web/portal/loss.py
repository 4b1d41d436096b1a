"""Reporting the SIM lost or stolen (挂失), with or without signing in, and lifting the suspension (解挂)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from simkeep.auth.deps import AppSettings, DbSession
from simkeep.errors import DomainError
from simkeep.identifiers import normalise_msisdn
from simkeep.identity.service import Evidence
from simkeep.loss import service as loss_service
from simkeep.models import SuspensionReason
from simkeep.network.operations import commit_and_apply
from simkeep.web import i18n
from simkeep.web.deps import HolderPage, PageActor
from simkeep.web.forms import field_for, keep_or_discard, read_form
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
REASONS = (SuspensionReason.LOST, SuspensionReason.STOLEN)

i18n.add(
    {
        "loss.title": ("挂失", "Report the SIM lost or stolen"),
        "loss.intro": (
            "挂失后 SIM 卡立即停用：不能打电话、发短信，也收不到验证码，他人无法冒用。"
            "号码仍然属于您，补卡后继续使用。",
            "Reporting suspends the SIM at once: no calls, no messages, no codes, so nobody else can use it. "
            "The number stays yours; a replacement SIM keeps it.",
        ),
        "loss.anonymous": (
            "无需登录：填写号码和机主姓名或证件号码（填一项即可）。",
            "No sign-in needed: give the number and the holder's name or identity document number "
            "(one is enough).",
        ),
        "loss.signed_in": ("确认挂失号码 {msisdn}。", "Confirm the report for {msisdn}."),
        "loss.real_name": ("机主姓名", "Holder's name"),
        "loss.document": ("证件号码", "Identity document number"),
        "loss.reason": ("原因", "What happened"),
        "loss.reason.lost": ("丢失", "Lost"),
        "loss.reason.stolen": ("被盗", "Stolen"),
        "loss.submit": ("立即挂失", "Suspend the SIM now"),
        "loss.done.title": ("已挂失", "The SIM is suspended"),
        "loss.done.body": (
            "SIM 卡已停用，号码保留。请尽快补办新卡；找回原卡可以解除挂失。",
            "The SIM is suspended and the number kept. Apply for a replacement SIM; if you find the SIM, "
            "you can lift the suspension.",
        ),
        "loss.done.again": (
            "该号码此前已挂失，状态未变。",
            "This number was already reported; nothing changed.",
        ),
        "loss.done.reference": ("挂失编号", "Report reference"),
        "loss.done.apply": ("补办新卡", "Get a replacement SIM"),
        "loss.failed": (
            "信息不符，请核对后重试。",
            "The details do not match our records; check them and try again.",
        ),
        "reinstate.title": ("解除挂失", "Lift the suspension"),
        "reinstate.intro": (
            "找回了原 SIM 卡？输入服务密码和验证码即可恢复使用。",
            "Found the SIM? Your service password and a one-time code make it work again.",
        ),
        "reinstate.submit": ("解除挂失", "Lift the suspension"),
        "reinstate.none": ("该号码当前未挂失。", "This number is not suspended for loss."),
        "reinstate.done.title": ("已解除挂失", "The suspension is lifted"),
        "reinstate.done.body": ("原 SIM 卡已恢复使用。", "The SIM works again."),
    }
)


def _loss_page(
    request: Request,
    settings: AppSettings,
    actor: PageActor,
    session: DbSession,
    status_code: int = 200,
    **ctx: object,
) -> Response:
    msisdn = None
    if actor.kind == "line":
        line, _ = holder_line(session, actor)
        msisdn = line.msisdn
    return page(
        request,
        settings,
        "portal/loss_report.html",
        status_code=status_code,
        signed_in=actor.kind == "line",
        msisdn=msisdn,
        reasons=[str(r) for r in REASONS],
        **ctx,
    )


@router.get("/portal/loss-report")
def loss_form(request: Request, session: DbSession, settings: AppSettings, actor: PageActor) -> Response:
    """The report form: one confirmation when signed in, else number plus name or document number."""
    return _loss_page(request, settings, actor, session)


@router.post("/portal/loss-report")
async def report(request: Request, session: DbSession, settings: AppSettings, actor: PageActor) -> Response:
    """Suspend the SIM now."""
    form, _ = await read_form(request, settings)
    lang = lang_of(request)
    reason = SuspensionReason(form.get("reason")) if form.get("reason") in REASONS else SuspensionReason.LOST
    signed_in = actor.kind == "line"
    if signed_in:
        msisdn = holder_line(session, actor)[0].msisdn
        evidence = Evidence()
    else:
        form.require(lang, "msisdn")
        if not form.get("real_name") and not form.get("document_number"):
            form.errors["real_name"] = i18n.translate(lang, "pcode.PROOF_MISSING")
        msisdn = form.get("msisdn")
        evidence = Evidence(
            real_name=form.get("real_name") or None, document_number=form.get("document_number") or None
        )
    if form.ok:
        try:
            outcome = loss_service.report_loss(
                session,
                settings,
                actor=actor,
                msisdn=normalise_msisdn(msisdn),
                reason=reason,
                evidence=evidence,
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            if exc.code in ("PROOF_FAILED", "LINE_NOT_FOUND"):  # an unknown number reads like a mismatch
                form.errors["_form"] = i18n.translate(lang, "loss.failed")
            else:
                where = field_for(exc)
                form.errors[where if where != "_form" else "msisdn"] = say(lang, exc)
        else:
            commit_and_apply(session, settings)
            return page(
                request,
                settings,
                "portal/loss_done.html",
                signed_in=signed_in,
                report=outcome.report,
                created=outcome.created,
            )
    values = {k: form.get(k) for k in ("msisdn", "real_name", "reason")}
    return _loss_page(request, settings, actor, session, errors=form.errors, values=values, status_code=422)


def _reinstate_page(
    request: Request,
    session: DbSession,
    settings: AppSettings,
    actor: HolderPage,
    status_code: int = 200,
    **ctx: object,
) -> Response:
    line, holder = holder_line(session, actor)
    return page(
        request,
        settings,
        "portal/reinstate.html",
        status_code=status_code,
        line=line,
        suspended=loss_service.open_report(session, line.id) is not None,
        channels=code_channels(line, holder),
        **ctx,
    )


@router.get("/portal/reinstate")
def reinstate_form(
    request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """The service password and a one-time code."""
    return _reinstate_page(request, session, settings, actor)


@router.post("/portal/reinstate/code")
async def reinstate_code(
    request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Send the code for lifting the suspension."""
    form, _ = await read_form(request, settings)
    sent = send_page_code(
        session, settings, actor=actor, purpose="loss.reinstate", form=form, lang=lang_of(request)
    )
    return _reinstate_page(
        request, session, settings, actor, sent_to=sent, errors=form.errors, status_code=200 if sent else 422
    )


@router.post("/portal/reinstate")
async def reinstate(
    request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Lift the suspension with the password and the code."""
    form, _ = await read_form(request, settings)
    lang = lang_of(request)
    form.require(lang, "password", "code")
    if form.ok:
        line, _ = holder_line(session, actor)
        try:
            loss_service.reinstate(
                session,
                settings,
                actor=actor,
                msisdn=line.msisdn,
                evidence=Evidence(service_password=form.get("password"), one_time_code=form.get("code")),
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            place_proof_error(form.errors, exc, lang)
        else:
            commit_and_apply(session, settings)
            return page(
                request,
                settings,
                "portal/done.html",
                title_key="reinstate.done.title",
                body_key="reinstate.done.body",
                testid="reinstated",
            )
    return _reinstate_page(request, session, settings, actor, errors=form.errors, status_code=422)
