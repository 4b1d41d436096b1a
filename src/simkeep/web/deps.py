"""Who is asking, for pages: the session cookie's actor, and redirects to sign in."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request

from simkeep.auth.actors import ANONYMOUS, Actor
from simkeep.auth.deps import AppSettings, DbSession, resolve_token
from simkeep.errors import AuthenticationFailed, NotAllowed
from simkeep.models import StaffRole
from simkeep.web.security import SESSION_COOKIE


class RedirectTo(Exception):
    """Answer with a redirect (to a sign-in page, or after a form)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def page_actor(request: Request, session: DbSession, settings: AppSettings) -> Actor:
    """The actor of the session cookie, or anonymous (an expired or revoked session is anonymous)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return ANONYMOUS
    try:
        return resolve_token(request, session, settings, token)
    except AuthenticationFailed:
        return ANONYMOUS


PageActor = Annotated[Actor, Depends(page_actor)]


def _next(request: Request) -> str:
    return quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")


async def require_holder(request: Request, actor: PageActor) -> Actor:
    """A holder signed in to the portal; others are sent to the portal's sign-in."""
    if actor.kind != "line":
        raise RedirectTo(f"/portal/sign-in?next={_next(request)}")
    return actor


def require_staff_page(*roles: StaffRole):  # type: ignore[no-untyped-def]
    """Staff signed in to the console with one of ``roles`` (admins always); others sent to sign in."""

    async def dependency(request: Request, actor: PageActor) -> Actor:
        if not actor.is_staff:
            raise RedirectTo(f"/console/sign-in?next={_next(request)}")
        if roles and not actor.has_role(*roles):
            raise NotAllowed("Your role does not allow this page.", code="ROLE_NOT_ALLOWED")
        return actor

    return dependency


HolderPage = Annotated[Actor, Depends(require_holder)]
StaffPage = Annotated[Actor, Depends(require_staff_page())]
ReviewerPage = Annotated[Actor, Depends(require_staff_page(StaffRole.REVIEWER))]
AdminPage = Annotated[Actor, Depends(require_staff_page(StaffRole.ADMIN))]
ClerkPage = Annotated[Actor, Depends(require_staff_page(StaffRole.CLERK))]


def safe_next(url: str | None, default: str) -> str:
    """A same-site path to go to after signing in (never another site)."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return default
