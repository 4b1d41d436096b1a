"""Signing in to the portal: number and service password, then a one-time code to a registered contact."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from simkeep.auth import service as auth_service
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.errors import DomainError
from simkeep.identifiers import normalise_msisdn
from simkeep.security import constant_time_equal, keyed_hash
from simkeep.web import i18n
from simkeep.web.deps import PageActor, safe_next
from simkeep.web.forms import field_for, keep_or_discard, message_for, read_form
from simkeep.web.security import PENDING_COOKIE, SESSION_COOKIE, set_cookie
from simkeep.web.templating import language_of, render

router = APIRouter()
PENDING_SECONDS = 600

i18n.add(
    {
        "signin.title": ("登录", "Sign in"),
        "signin.intro": (
            "输入号码和服务密码，我们会向您登记的邮箱或其他手机号发送验证码（不会发到本号码）。",
            "Enter your number and service password; we send a code to your registered e-mail or other "
            "phone (never to this number).",
        ),
        "signin.channel": ("验证码发送到", "Send the code to"),
        "signin.channel.email": ("登记的邮箱", "my registered e-mail"),
        "signin.channel.sms": ("登记的其他手机号", "my registered other phone"),
        "signin.code.title": ("输入验证码", "Enter the code"),
        "signin.code.intro": (
            "验证码已发送到 {to}，5 分钟内有效。",
            "We sent a code to {to}; it is valid for 5 minutes.",
        ),
        "signin.code.label": ("6 位验证码", "6-digit code"),
        "signin.forgot": ("忘记服务密码？", "Forgot the service password?"),
        "signin.expired": ("登录已超时，请重新开始。", "Signing in took too long; please start again."),
        "code.INVALID_CREDENTIALS": ("号码或服务密码不正确。", "The number and password do not match."),
        "code.PROOF_FAILED": ("验证失败，请检查后重试。", "That did not match; check it and try again."),
        "code.OTP_NO_CONTACT": (
            "您没有登记这种联系方式，请选择另一种，或到营业厅办理。",
            "You have no registered contact of that kind; choose the other, or visit a store.",
        ),
        "code.SELF_SERVICE_LOCKED": (
            "失败次数过多，自助服务已暂时锁定。请稍后再试，或携带身份证件到营业厅。",
            "Too many failed attempts: self-service is locked for a while. Try later, or visit a store "
            "with your identity document.",
        ),
        "code.PASSWORD_LOCKED": (
            "服务密码输错次数过多，已暂时锁定。",
            "Too many wrong service passwords: password use is locked for a while.",
        ),
        "code.INVALID_MSISDN": ("号码格式不正确。", "That is not a valid phone number."),
        "code.OTP_RATE_LIMITED": (
            "验证码发送过于频繁，请一小时后再试。",
            "Too many codes were sent; try again in an hour.",
        ),
    }
)


def _pending_value(settings_secret: str, line_id: int, sent_to: str) -> str:
    expires = int(time.time()) + PENDING_SECONDS
    body = f"{line_id}.{expires}.{sent_to}"
    return f"{body}.{keyed_hash(settings_secret, body, purpose='portal-pending')}"


def _read_pending(settings_secret: str, value: str | None) -> tuple[int, str] | None:
    if not value or len(value) > 300 or value.count(".") < 3:
        return None
    body, mac = value.rsplit(".", 1)
    if not constant_time_equal(keyed_hash(settings_secret, body, purpose="portal-pending"), mac):
        return None
    line_id, expires, sent_to = body.split(".", 2)
    if not line_id.isdigit() or not expires.isdigit() or int(expires) < time.time():
        return None
    return int(line_id), sent_to


@router.get("/portal/sign-in")
def sign_in_page(
    request: Request,
    settings: AppSettings,
    actor: PageActor,
    next_url: Annotated[str | None, Query(alias="next")] = None,
) -> Response:
    """The first step: number, service password and where the code goes."""
    if actor.kind == "line":
        return RedirectResponse(safe_next(next_url, "/portal"), status_code=303)
    return render(
        request,
        settings,
        "portal/sign_in.html",
        area="portal",
        area_title="app.portal",
        errors={},
        values={},
        next_url=safe_next(next_url, "/portal"),
    )


@router.post("/portal/sign-in")
async def sign_in(request: Request, session: DbSession, settings: AppSettings) -> Response:
    """Check the number and password and send the code; then ask for the code."""
    form, _ = await read_form(request, settings)
    lang = language_of(request)
    form.require(lang, "msisdn", "password")
    channel = form.get("channel") if form.get("channel") in ("email", "sms") else "email"
    if form.ok:
        try:
            line_id = auth_service.start_portal_sign_in(
                session,
                settings,
                msisdn=normalise_msisdn(form.get("msisdn")),
                service_password=form.values.get("password", ""),
                channel=channel,
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            wrong = exc.code == "PROOF_FAILED"  # a wrong password reads like an unknown number
            form.errors[field_for(exc)] = (
                i18n.translate(lang, "code.INVALID_CREDENTIALS") if wrong else message_for(lang, exc)
            )
        else:
            session.commit()
            from simkeep.identity.otp import latest_destination

            sent_to = latest_destination(session, line_id=line_id, purpose="portal.sign_in")
            response = RedirectResponse(
                f"/portal/sign-in/code?next={safe_next(form.get('next'), '/portal')}", status_code=303
            )
            set_cookie(
                response,
                settings,
                PENDING_COOKIE,
                _pending_value(settings.secret_key, line_id, sent_to),
                max_age=PENDING_SECONDS,
            )
            return response
    return render(
        request,
        settings,
        "portal/sign_in.html",
        status_code=422,
        area="portal",
        area_title="app.portal",
        errors=form.errors,
        values={"msisdn": form.get("msisdn"), "channel": channel},
        next_url=safe_next(form.get("next"), "/portal"),
    )


@router.get("/portal/sign-in/code")
def code_page(
    request: Request, settings: AppSettings, next_url: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """The second step: the code."""
    pending = _read_pending(settings.secret_key, request.cookies.get(PENDING_COOKIE))
    if pending is None:
        return RedirectResponse("/portal/sign-in", status_code=303)
    return render(
        request,
        settings,
        "portal/sign_in_code.html",
        area="portal",
        area_title="app.portal",
        errors={},
        sent_to=pending[1],
        next_url=safe_next(next_url, "/portal"),
    )


@router.post("/portal/sign-in/code")
async def check_code(request: Request, session: DbSession, settings: AppSettings) -> Response:
    """Check the code and open the session."""
    form, _ = await read_form(request, settings)
    lang = language_of(request)
    pending = _read_pending(settings.secret_key, request.cookies.get(PENDING_COOKIE))
    if pending is None:
        form.errors["_form"] = i18n.translate(lang, "signin.expired")
        return render(
            request,
            settings,
            "portal/sign_in.html",
            status_code=422,
            area="portal",
            area_title="app.portal",
            errors=form.errors,
            values={},
            next_url="/portal",
        )
    form.require(lang, "code")
    if form.ok:
        try:
            issued = auth_service.complete_portal_sign_in(
                session, settings, line_id=pending[0], code=form.get("code")
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            form.errors["code"] = message_for(lang, exc)
        else:
            session.commit()
            response = RedirectResponse(safe_next(form.get("next"), "/portal"), status_code=303)
            set_cookie(
                response,
                settings,
                SESSION_COOKIE,
                issued.access_token,
                max_age=settings.line_token_ttl_minutes * 60,
            )
            response.delete_cookie(PENDING_COOKIE, path="/")
            return response
    return render(
        request,
        settings,
        "portal/sign_in_code.html",
        status_code=422,
        area="portal",
        area_title="app.portal",
        errors=form.errors,
        sent_to=pending[1],
        next_url=safe_next(form.get("next"), "/portal"),
    )


@router.post("/portal/sign-out")
async def sign_out(request: Request, session: DbSession, settings: AppSettings) -> Response:
    """End the session (the token is revoked, not just forgotten by the browser)."""
    await read_form(request, settings)
    token = request.cookies.get(SESSION_COOKIE)
    if token and len(token) <= 200:
        auth_service.sign_out(session, settings, token)
        session.commit()
    response = RedirectResponse("/portal/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
