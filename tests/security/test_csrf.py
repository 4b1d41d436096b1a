"""Cross-site request forgery on every form of the portal and the console.

The forms are found from the app's own router (every POST page route), so a form added later is attacked
too. Each is posted by a browser that is signed in (a holder for the portal, an admin for the console, who
passes every role check), with fields that would do something, three ways a forging site could try: with no
token, with a token of another browser, and with a token but without this browser's CSRF cookie. Each must
be refused with CSRF_FAILED before it does anything: no row changes, no proof is tried, no audit entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.web.routes import include_pages
from simkeep.web.security import CSRF_COOKIE, SESSION_COOKIE
from tests import factories
from tests.replacements.conftest import World
from tests.security.conftest import approved_order, bearer_of, csrf_pair, rows


def _walk(routes: list[Any], prefix: str = "") -> Iterator[tuple[set[str], str]]:
    for route in routes:
        if hasattr(route, "original_router"):  # an included router (FastAPI >= 0.120 keeps them nested)
            yield from _walk(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "methods") and route.methods:
            yield set(route.methods), prefix + route.path


def form_routes() -> list[str]:
    """Every POST route of the pages (portal, console, language switch), from the router itself."""
    app = FastAPI()
    include_pages(app)
    return sorted({path for methods, path in _walk(list(app.router.routes)) if "POST" in methods})


FORM_ROUTES = form_routes()
#: Fields that, were the token not checked, would make most forms act (sign in, lock, pay, decide...).
FORM_FIELDS = {
    "lang": "en",
    "next": "/portal",
    "msisdn": "",
    "password": factories.PASSWORD,
    "username": "",
    "channel": "email",
    "code": "123456",
    "on": "1",
    "lock": "off",
    "real_name": "张伟",
    "document_number": factories.DOCUMENT,
    "reason": "forged",
    "approve": "1",
    "decision": "approve",
    "payment_reference": "PAY-FORGED",
    "iccid_digits": "123456",
    "iccid": "",
    "contact_email": "attacker@example.org",
    "new_password": "Forged-pass-2026",
    "store": "",
    "count": "1",
}
ATTEMPTS = ["no token", "another browser's token", "no CSRF cookie"]


def _attempt(world: World, settings: Settings, path: str, session: str | None, how: str) -> Any:
    """Post the form at ``path`` as a signed-in browser tricked by another site, the way ``how`` says."""
    client = world.client
    client.cookies.clear()
    seed, token = csrf_pair(settings, "the-victims-browser")
    _, foreign = csrf_pair(settings, "the-attackers-browser")
    if how != "no CSRF cookie":
        client.cookies.set(CSRF_COOKIE, seed)
    if session is not None:
        client.cookies.set(SESSION_COOKIE, session)
    fields = {**FORM_FIELDS, "msisdn": world.holder.msisdn}
    if how == "another browser's token":
        fields["csrf"] = foreign
    elif how == "no CSRF cookie":
        fields["csrf"] = token
    return client.post(path, data=fields, follow_redirects=False)


class TestFormsRefuseForgedPosts:
    """Every form of the pages, posted across sites."""

    def test_every_form_route_is_attacked(self) -> None:
        """The router lists the forms this suite attacks: the sign-ins, the holder's self-service, the
        counter, the reviews, the line pages and the stock."""
        expected = {
            "/lang",
            "/portal/sign-in",
            "/portal/sign-in/code",
            "/portal/sign-out",
            "/portal/loss-report",
            "/portal/reinstate",
            "/portal/lock",
            "/portal/contacts",
            "/portal/apply/submit",
            "/portal/orders/{reference}/activate",
            "/portal/password-reset/complete",
            "/console/sign-in",
            "/console/counter/orders",
            "/console/counter/orders/{reference}/activation",
            "/console/reviews/{reference}/decision",
            "/console/lines/{line_id}/reveal",
            "/console/stock/transfer",
        }
        assert expected <= set(FORM_ROUTES)
        assert all(p.startswith(("/portal", "/console", "/lang")) for p in FORM_ROUTES)

    @pytest.mark.parametrize("template", FORM_ROUTES)
    def test_forged_post_is_refused_and_changes_nothing(
        self, world: World, db: Session, settings: Settings, template: str
    ) -> None:
        """A signed-in browser made to post this form by another site (no token, another browser's token,
        or no CSRF cookie) is refused with CSRF_FAILED (403) each time, and nothing at all changes: no row,
        no proof attempt, no audit entry."""
        store_order = world.client.post(
            "/api/v1/replacements",
            headers=world.clerk,
            json={
                "msisdn": world.holder.msisdn,
                "channel": "store",
                "in_person_document_number": factories.DOCUMENT,
            },
        )
        assert store_order.status_code == 201, store_order.text
        reference = str(store_order.json()["reference"])
        if template.startswith("/portal/orders/"):
            world.client.post(
                f"/api/v1/replacements/{reference}/cancellation", json={"reason": "x"}, headers=world.clerk
            )
            reference = approved_order(db, settings, world.holder)
        path = template.format(reference=reference, line_id=world.holder.line.id)
        if template.startswith("/console"):
            session: str | None = bearer_of(world.admin)
        elif template.startswith("/portal"):
            session = bearer_of(world.holder_headers())
        else:
            session = None
        before = rows(db)
        for how in ATTEMPTS:
            r = _attempt(world, settings, path, session, how)
            assert r.status_code == 403, (path, how, r.status_code, r.text[:300])
            assert "CSRF_FAILED" in r.text, how
        assert rows(db) == before
