"""What the portal's pages share: the holder's line, sending a one-time code from a page, error texts."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.identity import otp
from simkeep.lines import repository as lines_repo
from simkeep.models import Line, Subscriber
from simkeep.notifications.service import contacts
from simkeep.web import i18n
from simkeep.web.forms import Form, keep_or_discard, message_for
from simkeep.web.templating import language_of, render

CODE_CHANNELS = ("email", "sms")


def holder_line(session: Session, actor: Actor) -> tuple[Line, Subscriber]:
    """The signed-in holder's line and subscriber record."""
    line = lines_repo.get(session, actor.line_id or -1)
    holder = lines_repo.holder_of(session, line) if line else None
    assert line is not None
    assert holder is not None
    return line, holder


def code_channels(line: Line, holder: Subscriber) -> list[str]:
    """The channels a code can go to for this holder (never the line itself)."""
    return [c for c in CODE_CHANNELS if c in contacts(holder, line)]


def send_page_code(
    session: Session, settings: Settings, *, actor: Actor, purpose: str, form: Form, lang: str
) -> str | None:
    """Send a code for ``purpose`` to the channel chosen on the form; the masked destination, or None with
    the refusal noted on the form's ``code`` field (the code is committed at once so it can be used)."""
    line, holder = holder_line(session, actor)
    channel = form.get("code_channel") if form.get("code_channel") in CODE_CHANNELS else "email"
    try:
        row = otp.send_code(session, settings, line=line, subscriber=holder, purpose=purpose, channel=channel)
    except DomainError as exc:
        keep_or_discard(session, exc)
        form.errors["code"] = say(lang, exc)
        return None
    session.commit()
    return row.destination_masked


def page(
    request: Request, settings: Settings, template: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a portal page (errors default to none)."""
    context.setdefault("errors", {})
    context.setdefault("values", {})
    context.setdefault("signed_in", True)
    return render(
        request,
        settings,
        template,
        status_code=status_code,
        area="portal",
        area_title="app.portal",
        **context,
    )


def lang_of(request: Request) -> str:
    """The page language."""
    return language_of(request)


i18n.add(
    {
        "otp.section": ("验证码", "One-time code"),
        "otp.send": ("发送验证码", "Send a code"),
        "otp.sent": (
            "验证码已发送到 {to}，5 分钟内有效。",
            "A code was sent to {to}; it is valid for 5 minutes.",
        ),
        "otp.label": ("6 位验证码", "6-digit code"),
        "otp.hint": (
            "先点“发送验证码”，验证码会发到您登记的邮箱或其他手机号，不会发到本号码。",
            "Press “Send a code” first: it goes to your registered e-mail or other phone, "
            "never to this number.",
        ),
        "otp.channel": ("发送到", "Send it to"),
        "otp.channel.email": ("登记的邮箱", "my registered e-mail"),
        "otp.channel.sms": ("登记的其他手机号", "my registered other phone"),
        "pcode.LINE_NOT_FOUND": ("未找到该号码。", "No such number."),
        "pcode.LINE_RECYCLED": ("该号码已被回收。", "This number was recycled."),
        "pcode.ORDER_NOT_FOUND": ("未找到该申请。", "Order not found."),
        "pcode.ASSURANCE_TOO_LOW": (
            "此操作需要更强的身份验证。",
            "This needs stronger proof of identity.",
        ),
        "pcode.PROOF_MISSING": (
            "请填写机主姓名或证件号码。",
            "Give the holder's name or identity document number.",
        ),
        "pcode.NO_OPEN_LOSS_REPORT": ("该号码未挂失。", "This number is not suspended for loss."),
        "pcode.REPLACEMENT_ALREADY_OPEN": (
            "该号码已有一个进行中的补卡申请。",
            "This number already has an open replacement order.",
        ),
        "pcode.COOLDOWN_ACTIVE": (
            "30 天内已在线补过卡，请携带身份证件到营业厅办理，或稍后再试。",
            "An online replacement was made for this number in the last 30 days: visit a store with your "
            "identity document, or wait.",
        ),
        "pcode.SIM_CHANGE_LOCKED": (
            "您已开启换卡保护，需先关闭才能补卡。",
            "Your SIM-change lock is on: turn it off first to get a new SIM.",
        ),
        "pcode.TRANSITION_NOT_ALLOWED": (
            "该申请当前状态下不能进行此操作。",
            "This step is not possible for the order in its current state.",
        ),
        "pcode.PAYMENT_INVALID": ("请填写支付流水号。", "Give the payment reference."),
        "pcode.PAYMENT_REFERENCE_USED": (
            "该支付流水号已被使用。",
            "That payment reference was already used.",
        ),
        "pcode.ADDRESS_INVALID": (
            "收件地址不完整或不在配送范围内。",
            "The delivery address is incomplete or outside our delivery area.",
        ),
        "pcode.EVIDENCE_NOT_FOUND": (
            "照片已失效，请重新上传。",
            "That photo can no longer be used; upload it again.",
        ),
        "pcode.EVIDENCE_PURGED": ("照片已过期，请重新上传。", "That photo has expired; upload it again."),
        "pcode.DOCUMENT_INVALID": (
            "证件号码不正确，请核对（校验位或出生日期有误）。",
            "That document number is not valid (check character or birth date); check it.",
        ),
        "pcode.UPLOAD_REJECTED": (
            "无法识别该图片，请上传 JPEG、PNG 或 WebP 照片。",
            "That is not a JPEG, PNG or WebP photo.",
        ),
        "pcode.CONTACT_IS_LINE": (
            "联系电话不能是本号码。",
            "The contact phone must be another number than this line.",
        ),
        "pcode.CONTACT_INVALID": ("邮箱地址格式不正确。", "That is not an e-mail address."),
        "pcode.CONTACT_REQUIRED": (
            "请至少保留一种联系方式（邮箱或其他手机号）。",
            "Keep at least one contact (an e-mail address or another phone number).",
        ),
        "pcode.PASSWORD_WEAK": (
            "新密码太容易被猜到（不能含生日、证件号或手机号中的数字，不能是连续或重复数字，6 到 64 位）。",
            "The new password is too easy to guess (6 to 64 characters, not from your birth date, document "
            "or phone number, no repeated or consecutive digits).",
        ),
        "done.home": ("返回首页", "Back to home"),
    }
)


def place_proof_error(errors: dict[str, str], exc: DomainError, lang: str) -> None:
    """Put a refusal next to the field it is about (a wrong password, code or document number), else on the
    whole form."""
    methods = exc.details.get("methods") or []
    text = say(lang, exc)
    if exc.code == "PROOF_FAILED" and methods:
        if "service_password" in methods:
            errors["password"] = i18n.translate(lang, "proof.password")
        if "one_time_code" in methods:
            errors["code"] = i18n.translate(lang, "proof.code")
        if "biographical" in methods:
            errors["document_number"] = i18n.translate(lang, "proof.document")
        if not errors:
            errors["_form"] = text
    elif exc.code == "PASSWORD_LOCKED":
        errors["password"] = text
    else:
        errors["_form"] = text


def say(lang: str, exc: DomainError) -> str:
    """What the portal tells a holder about a refusal: the portal's own text for the code first (the
    catalogue's shared ``code.*`` texts are also written for staff), then the shared one."""
    key = f"pcode.{exc.code}"
    text = i18n.translate(lang, key)
    return message_for(lang, exc) if text == key else text


i18n.add(
    {
        "pcode.PROOF_FAILED": ("验证失败，请检查后重试。", "That did not match; check it and try again."),
        "proof.password": ("服务密码不正确。", "The service password is wrong."),
        "proof.code": ("验证码错误或已过期。", "The code is wrong or has expired."),
        "proof.document": ("证件号码与登记信息不符。", "The document number does not match our records."),
        "pcode.SELF_SERVICE_LOCKED": (
            "失败次数过多，自助服务已暂时锁定。请稍后再试，或携带身份证件到营业厅。",
            "Too many failed attempts: self-service is locked for a while. Try later, or visit a store "
            "with your identity document.",
        ),
        "pcode.PASSWORD_LOCKED": (
            "服务密码输错次数过多，已暂时锁定。",
            "Too many wrong service passwords: password use is locked for a while.",
        ),
        "pcode.OTP_NO_CONTACT": (
            "您没有登记这种联系方式，请选择另一种，或到营业厅办理。",
            "You have no registered contact of that kind; choose the other, or visit a store.",
        ),
        "pcode.OTP_RATE_LIMITED": (
            "验证码发送过于频繁，请一小时后再试。",
            "Too many codes were sent; try again in an hour.",
        ),
        "pcode.INVALID_MSISDN": ("号码格式不正确。", "That is not a valid phone number."),
    }
)
