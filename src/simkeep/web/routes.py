"""Mounting the pages: the portal, the console, the language switch, static files and HTML error pages."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from simkeep.auth.deps import AppSettings
from simkeep.errors import DomainError, http_status_for
from simkeep.web import i18n
from simkeep.web.deps import RedirectTo, safe_next
from simkeep.web.forms import message_for, read_form
from simkeep.web.security import LANG_COOKIE, set_cookie
from simkeep.web.templating import language_of, render

STATIC_DIR = Path(__file__).parent / "static"
PAGE_PREFIXES = ("/portal", "/console", "/lang")

common = APIRouter(include_in_schema=False)


@common.get("/")
def root() -> Response:
    """The portal is the front door."""
    return RedirectResponse("/portal", status_code=303)


@common.post("/lang")
async def switch_language(request: Request, settings: AppSettings) -> Response:
    """Remember the language chosen with the switch and go back to the page."""
    form, _ = await read_form(request, settings)
    lang = form.get("lang") if form.get("lang") in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    response = RedirectResponse(safe_next(form.get("next"), "/portal"), status_code=303)
    set_cookie(response, settings, LANG_COOKIE, lang, max_age=365 * 24 * 3600)
    return response


def is_page(request: Request) -> bool:
    """Whether the request is for a page (HTML errors) rather than the API (problem details)."""
    return request.url.path.startswith(PAGE_PREFIXES)


def error_page(request: Request, error: DomainError) -> Response:
    """A domain error on a page, in the person's language, with a way back."""
    settings = request.app.state.settings
    lang = language_of(request)
    area = "console" if request.url.path.startswith("/console") else "portal"
    return render(
        request,
        settings,
        "error.html",
        status_code=http_status_for(error),
        area=area,
        area_title=f"app.{area}",
        message=message_for(lang, error, prefix="ccode." if area == "console" else "pcode."),
        code=error.code,
        back="/console" if area == "console" else "/portal",
    )


def include_pages(app: FastAPI) -> None:
    """Mount every page router and the static files."""
    from simkeep.web.console import auth as console_auth
    from simkeep.web.console import home as console_home
    from simkeep.web.portal import auth as portal_auth
    from simkeep.web.portal import home as portal_home

    for router in (common, portal_auth.router, portal_home.router, console_auth.router, console_home.router):
        app.include_router(router, include_in_schema=False)
    for module in PAGE_MODULES:
        app.include_router(_load(module).router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(RedirectTo)
    async def on_redirect(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RedirectTo)
        return RedirectResponse(exc.url, status_code=303)


#: Further page modules (each with a ``router``), added as the pages grow.
PAGE_MODULES: list[str] = ["simkeep.web.portal.pages", "simkeep.web.console.pages"]


def _load(module: str) -> ModuleType:
    import importlib

    return importlib.import_module(module)
