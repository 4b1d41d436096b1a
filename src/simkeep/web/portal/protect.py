"""Protecting the line: the SIM-change lock (on with the session, off with a code) and the contacts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.auth.deps import AppSettings, DbSession
from simkeep.config import Settings
from simkeep.errors import DomainError
from simkeep.identity.service import Evidence
from simkeep.lines import protection
from simkeep.masking import mask_email, mask_msisdn
from simkeep.web import i18n
from simkeep.web.deps import HolderPage
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

i18n.add(
    {
        "lock.title": ("换卡保护", "SIM-change lock"),
        "lock.intro": (
            "开启后，任何补卡、换卡（包括营业厅和 eSIM）都会被拒绝，并通知您。关闭需要验证码。",
            "While it is on, every SIM change (at a store, by mail or eSIM) is refused and you are told. "
            "Turning it off needs a one-time code.",
        ),
        "lock.state.on": ("已开启", "On"),
        "lock.state.off": ("未开启", "Off"),
        "lock.turn_on": ("开启换卡保护", "Turn the lock on"),
        "lock.turn_off": ("关闭换卡保护", "Turn the lock off"),
        "lock.done.on": ("换卡保护已开启。", "The lock is on."),
        "lock.done.off": ("换卡保护已关闭。", "The lock is off."),
        "contacts.title": ("修改联系方式", "Update contact details"),
        "contacts.intro": (
            "验证码和提醒会发到这些联系方式（不会发到本号码）。修改需要发到现有联系方式的验证码，原联系方式会收到通知。",
            "Codes and alerts go to these contacts (never to this number). Changing them needs a code sent "
            "to a current contact, and the current contacts are told.",
        ),
        "contacts.current": ("当前", "Now"),
        "contacts.email": ("邮箱", "E-mail"),
        "contacts.phone": ("其他手机号", "Other phone number"),
        "contacts.submit": ("保存", "Save"),
        "contacts.done": (
            "联系方式已更新，原联系方式已收到通知。",
            "Contacts updated; the old contacts were told.",
        ),
    }
)


def _lock_page(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    *,
    status_code: int = 200,
    **ctx: object,
) -> Response:
    line, holder = holder_line(session, actor)
    return page(
        request,
        settings,
        "portal/lock.html",
        status_code=status_code,
        line=line,
        channels=code_channels(line, holder),
        **ctx,
    )


@router.get("/portal/lock")
def lock_page(request: Request, session: DbSession, settings: AppSettings, actor: HolderPage) -> Response:
    """The lock's state, and the way to turn it on or off."""
    return _lock_page(request, session, settings, actor)


@router.post("/portal/lock/code")
async def lock_code(
    request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Send the code for turning the lock off."""
    form, _ = await read_form(request, settings)
    sent = send_page_code(
        session, settings, actor=actor, purpose="lock.off", form=form, lang=lang_of(request)
    )
    return _lock_page(
        request, session, settings, actor, errors=form.errors, sent_to=sent, status_code=200 if sent else 422
    )


@router.post("/portal/lock")
async def set_lock(
    request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """On with the session; off with the code."""
    form, _ = await read_form(request, settings)
    lang = lang_of(request)
    on = form.get("on") == "1"
    if not on:
        form.require(lang, "code")
    if form.ok:
        line, _ = holder_line(session, actor)
        try:
            protection.set_sim_change_lock(
                session,
                settings,
                actor=actor,
                msisdn=line.msisdn,
                on=on,
                evidence=Evidence(one_time_code=None if on else form.get("code")),
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            place_proof_error(form.errors, exc, lang)
        else:
            session.commit()
            flash = i18n.translate(lang, "lock.done.on" if on else "lock.done.off")
            return _lock_page(request, session, settings, actor, flash=flash)
    return _lock_page(request, session, settings, actor, errors=form.errors, status_code=422)


def _contacts_page(
    request: Request,
    session: Session,
    settings: Settings,
    actor: Actor,
    *,
    status_code: int = 200,
    values: dict[str, str] | None = None,
    **ctx: object,
) -> Response:
    line, holder = holder_line(session, actor)
    current = {
        "email": mask_email(holder.contact_email) if holder.contact_email else "—",
        "phone": mask_msisdn(holder.contact_phone) if holder.contact_phone else "—",
    }
    return page(
        request,
        settings,
        "portal/contacts.html",
        status_code=status_code,
        current=current,
        channels=code_channels(line, holder),
        values=values or {},
        **ctx,
    )


@router.get("/portal/contacts")
def contacts_page(request: Request, session: DbSession, settings: AppSettings, actor: HolderPage) -> Response:
    """The registered contacts (masked) and the form to change them."""
    return _contacts_page(request, session, settings, actor)


@router.post("/portal/contacts/code")
async def contacts_code(
    request: Request, session: DbSession, settings: AppSettings, actor: HolderPage
) -> Response:
    """Send the code for changing the contacts; the form comes back as typed."""
    form, _ = await read_form(request, settings)
    sent = send_page_code(
        session, settings, actor=actor, purpose="contact.change", form=form, lang=lang_of(request)
    )
    values = {"email": form.get("email"), "phone": form.get("phone")}
    return _contacts_page(
        request,
        session,
        settings,
        actor,
        errors=form.errors,
        sent_to=sent,
        values=values,
        status_code=200 if sent else 422,
    )


@router.post("/portal/contacts")
async def change(request: Request, session: DbSession, settings: AppSettings, actor: HolderPage) -> Response:
    """Change the contacts with the code; the old contacts are told first."""
    form, _ = await read_form(request, settings)
    lang = lang_of(request)
    form.require(lang, "code")
    values = {"email": form.get("email"), "phone": form.get("phone")}
    if form.ok:
        line, _ = holder_line(session, actor)
        try:
            protection.change_contacts(
                session,
                settings,
                actor=actor,
                msisdn=line.msisdn,
                contact_email=form.get("email") or None,
                contact_phone=form.get("phone") or None,
                evidence=Evidence(one_time_code=form.get("code")),
            )
        except DomainError as exc:
            keep_or_discard(session, exc)
            if exc.code in ("CONTACT_IS_LINE", "INVALID_MSISDN"):
                form.errors["phone"] = say(lang, exc)
            elif exc.code == "CONTACT_INVALID":
                form.errors["email"] = say(lang, exc)
            elif field_for(exc) == "_form" and exc.code != "CONTACT_REQUIRED":
                place_proof_error(form.errors, exc, lang)
            else:
                form.errors["email"] = say(lang, exc)
        else:
            session.commit()
            return _contacts_page(
                request, session, settings, actor, flash=i18n.translate(lang, "contacts.done")
            )
    return _contacts_page(
        request, session, settings, actor, errors=form.errors, values=values, status_code=422
    )
