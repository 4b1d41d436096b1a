"""Signing in to the console: each staff user with their own name and password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from simkeep.auth import service as auth_service
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.errors import DomainError
from simkeep.web import i18n
from simkeep.web.deps import PageActor, safe_next
from simkeep.web.forms import keep_or_discard, read_form
from simkeep.web.security import SESSION_COOKIE, set_cookie
from simkeep.web.templating import language_of, render

router = APIRouter()

i18n.add(
    {
        "console.signin.title": ("员工登录", "Staff sign-in"),
        "console.username": ("用户名", "User name"),
        "console.password": ("密码", "Password"),
        "console.signin.failed": ("用户名或密码不正确。", "Unknown user name or wrong password."),
    }
)


@router.get("/console/sign-in")
def sign_in_page(
    request: Request,
    settings: AppSettings,
    actor: PageActor,
    next_url: Annotated[str | None, Query(alias="next")] = None,
) -> Response:
    """The sign-in form."""
    if actor.is_staff:
        return RedirectResponse(safe_next(next_url, "/console"), status_code=303)
    return render(
        request,
        settings,
        "console/sign_in.html",
        area="console",
        area_title="app.console",
        errors={},
        values={},
        next_url=safe_next(next_url, "/console"),
    )


@router.post("/console/sign-in")
async def sign_in(request: Request, session: DbSession, settings: AppSettings) -> Response:
    """Check the name and password; open an 8-hour session."""
    form, _ = await read_form(request, settings)
    lang = language_of(request)
    form.require(lang, "username", "password")
    if form.ok:
        try:
            issued = auth_service.sign_in_staff(
                session, settings, username=form.get("username"), password=form.values.get("password", "")
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            form.errors["_form"] = i18n.translate(lang, "console.signin.failed")
        else:
            session.commit()
            response = RedirectResponse(safe_next(form.get("next"), "/console"), status_code=303)
            set_cookie(
                response,
                settings,
                SESSION_COOKIE,
                issued.access_token,
                max_age=settings.staff_token_ttl_minutes * 60,
            )
            return response
    return render(
        request,
        settings,
        "console/sign_in.html",
        status_code=422,
        area="console",
        area_title="app.console",
        errors=form.errors,
        values={"username": form.get("username")},
        next_url=safe_next(form.get("next"), "/console"),
    )


@router.post("/console/sign-out")
async def sign_out(request: Request, session: DbSession, settings: AppSettings) -> Response:
    """Revoke the session; the old cookie no longer opens anything."""
    await read_form(request, settings)
    token = request.cookies.get(SESSION_COOKIE)
    if token and len(token) <= 200:
        auth_service.sign_out(session, settings, token)
        session.commit()
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
