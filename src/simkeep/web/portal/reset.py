"""Forgotten service password: a code to a registered contact and the document number, then a new one."""

from __future__ import annotations

from contextlib import suppress

from fastapi import APIRouter, Request
from fastapi.responses import Response

from simkeep.auth.deps import AppSettings, DbSession
from simkeep.errors import DomainError
from simkeep.identifiers import normalise_msisdn
from simkeep.identity import otp, passwords
from simkeep.identity.errors import ProofFailed
from simkeep.web import i18n
from simkeep.web.forms import keep_or_discard, read_form
from simkeep.web.portal.common import lang_of, page, say

router = APIRouter()

i18n.add(
    {
        "reset.title": ("重置服务密码", "Reset the service password"),
        "reset.intro": (
            "输入号码和登记的证件号码，我们会把验证码发到您登记的邮箱或其他手机号（绝不会发到本号码）。",
            "Enter your number and registered document number; we send a code to your registered e-mail "
            "or other phone (never to this number).",
        ),
        "reset.document": ("证件号码", "Identity document number"),
        "reset.sent": (
            "如果信息与登记一致，验证码已发到您登记的联系方式。请在 5 分钟内完成下面的步骤。",
            "If the details match our records, a code is on its way to your registered contact. Finish "
            "the step below within 5 minutes.",
        ),
        "reset.new": ("新服务密码", "New service password"),
        "reset.new_hint": (
            "至少 6 位，不能使用生日、证件号码或手机号码中的数字。",
            "At least 6 characters; not your birth date, nor digits of your ID or phone number.",
        ),
        "reset.repeat": ("再次输入新密码", "New password again"),
        "reset.mismatch": ("两次输入的密码不一致。", "The two passwords differ."),
        "reset.submit": ("设置新密码", "Set the new password"),
        "reset.done": (
            "服务密码已修改，请用新密码登录。",
            "Your service password was changed; sign in with it.",
        ),
        "pcode.PASSWORD_WEAK": (
            "这个密码太容易被猜到（生日、证件号或手机号中的数字，或过于简单）。",
            "That password is too easy to guess (birth date, ID or phone digits, or too simple).",
        ),
    }
)


@router.get("/portal/password-reset")
def reset_page(request: Request, settings: AppSettings) -> Response:
    """Step one: the number, the document number and where the code goes."""
    return page(request, settings, "portal/password_reset.html", signed_in=False, step=1)


@router.post("/portal/password-reset")
async def start(request: Request, session: DbSession, settings: AppSettings) -> Response:
    """Send the code if the details match; the answer is the same either way."""
    form, _ = await read_form(request, settings)
    lang = lang_of(request)
    form.require(lang, "msisdn", "document_number")
    channel = form.get("code_channel") if form.get("code_channel") in ("email", "sms") else "email"
    if form.ok:
        try:
            msisdn = normalise_msisdn(form.get("msisdn"))
        except DomainError as exc:
            form.errors["msisdn"] = say(lang, exc)
        else:
            with suppress(ProofFailed, otp.OtpNoContact):
                passwords.start_reset(
                    session,
                    settings,
                    msisdn=msisdn,
                    document_number=form.get("document_number"),
                    channel=channel,
                )
            session.commit()
            return page(
                request,
                settings,
                "portal/password_reset.html",
                signed_in=False,
                step=2,
                values={"msisdn": msisdn, "document_number": form.get("document_number")},
            )
    return page(
        request,
        settings,
        "portal/password_reset.html",
        status_code=422,
        signed_in=False,
        step=1,
        errors=form.errors,
        values=form.values,
    )


@router.post("/portal/password-reset/complete")
async def complete(request: Request, session: DbSession, settings: AppSettings) -> Response:
    """Step two: the code, the document number again and the new password (twice)."""
    form, _ = await read_form(request, settings)
    lang = lang_of(request)
    form.require(lang, "msisdn", "document_number", "code", "new_password", "repeat")
    if form.ok and form.values.get("new_password") != form.values.get("repeat"):
        form.errors["repeat"] = i18n.translate(lang, "reset.mismatch")
    if form.ok:
        try:
            passwords.complete_reset(
                session,
                settings,
                msisdn=normalise_msisdn(form.get("msisdn")),
                document_number=form.get("document_number"),
                code=form.get("code"),
                new_password=form.values.get("new_password", ""),
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            field = "new_password" if exc.code == "PASSWORD_WEAK" else "code"
            form.errors[field] = say(lang, exc)
        else:
            session.commit()
            return page(request, settings, "portal/password_reset.html", signed_in=False, step=3)
    keep = {k: form.get(k) for k in ("msisdn", "document_number")}
    return page(
        request,
        settings,
        "portal/password_reset.html",
        status_code=422,
        signed_in=False,
        step=2,
        errors=form.errors,
        values=keep,
    )
