"""Cookies and CSRF for the pages.

The session is the same token as the API's bearer token, kept in an HttpOnly, SameSite=Lax cookie (Secure
in production). Every form carries a CSRF token: the HMAC of a random per-browser cookie under the secret
key, so a page from another site can neither read nor forge it. Every POST is checked before it does
anything.
"""

from __future__ import annotations

import secrets

from fastapi import Request, Response

from simkeep.config import Settings
from simkeep.errors import NotAllowed
from simkeep.security import constant_time_equal, keyed_hash

SESSION_COOKIE = "sk_session"
CSRF_COOKIE = "sk_csrf"
LANG_COOKIE = "sk_lang"
PENDING_COOKIE = "sk_pending"  # the signed-in-halfway state of the portal's two-step sign-in


class CsrfFailed(NotAllowed):
    """A form post without a valid CSRF token."""

    code = "CSRF_FAILED"


def secure_cookies(settings: Settings) -> bool:
    """Cookies only over HTTPS in production (behind the TLS-terminating proxy)."""
    return settings.environment == "production"


def set_cookie(response: Response, settings: Settings, name: str, value: str, *, max_age: int | None) -> None:
    """Set an HttpOnly, SameSite=Lax cookie for the whole site."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(settings),
        path="/",
    )


def csrf_seed(request: Request) -> str:
    """This browser's CSRF seed (made on first need; the response sets the cookie, see :func:`keep_seed`)."""
    seed = request.cookies.get(CSRF_COOKIE)
    if not seed or len(seed) > 100:
        seed = getattr(request.state, "new_csrf_seed", None) or secrets.token_urlsafe(24)
        request.state.new_csrf_seed = seed
    return seed


def csrf_token(request: Request, settings: Settings) -> str:
    """The token a form of this browser carries."""
    return keyed_hash(settings.secret_key, csrf_seed(request), purpose="csrf")


def keep_seed(request: Request, response: Response, settings: Settings) -> None:
    """Set the CSRF cookie if this request made a new seed."""
    seed = getattr(request.state, "new_csrf_seed", None)
    if seed:
        set_cookie(response, settings, CSRF_COOKIE, seed, max_age=None)


def check_csrf(request: Request, settings: Settings, token: str | None) -> None:
    """Refuse a form post whose token is missing or not this browser's."""
    seed = request.cookies.get(CSRF_COOKIE)
    if not seed or not token:
        raise CsrfFailed("This page has expired. Reload it and try again.")
    if not constant_time_equal(keyed_hash(settings.secret_key, seed, purpose="csrf"), token):
        raise CsrfFailed("This page has expired. Reload it and try again.")
