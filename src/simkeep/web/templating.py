"""Rendering pages: one Jinja2 environment (autoescaped), the language, the CSRF token and the actor."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from simkeep import __version__
from simkeep.config import Settings
from simkeep.masking import mask_iccid, mask_msisdn
from simkeep.web import i18n
from simkeep.web.security import LANG_COOKIE, csrf_token, keep_seed


@cache
def environment() -> Environment:
    """The templates under ``simkeep/web/templates``, HTML-escaped."""
    env = Environment(
        loader=PackageLoader("simkeep.web", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["msisdn"] = mask_msisdn
    env.filters["iccid"] = mask_iccid
    env.filters["date"] = lambda d: d.strftime("%Y-%m-%d") if d else "—"
    env.filters["datetime"] = lambda d: d.strftime("%Y-%m-%d %H:%M") if d else "—"
    return env


def language_of(request: Request, preferred: str | None = None) -> str:
    """The language of this request's pages."""
    return i18n.negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"), preferred)


def render(
    request: Request,
    settings: Settings,
    template: str,
    *,
    status_code: int = 200,
    language: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the page helpers; sets the CSRF cookie when the browser has none yet."""
    lang = language or language_of(request)

    def t(key: str, **params: object) -> str:
        return i18n.translate(lang, key, **params)

    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            lang=lang,
            t=t,
            csrf=csrf_token(request, settings),
            version=__version__,
            path=request.url.path,
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status_code)
    keep_seed(request, response, settings)
    response.headers["cache-control"] = "no-store"
    response.headers["x-frame-options"] = "DENY"
    response.headers["referrer-policy"] = "same-origin"
    response.headers["content-security-policy"] = (
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )
    return response
