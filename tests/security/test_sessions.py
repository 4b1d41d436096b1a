"""Sessions: reuse after sign-out, fixation, a forged half-way sign-in, and redirects after sign-in.

The portal and the console keep the session in an HttpOnly cookie that holds the same kind of token as the
API's bearer token. Signing out revokes the token on the server, so a copied cookie is worth nothing
afterwards; a session id planted before sign-in is never the one handed out; the portal's half-way state
(number and password checked, code pending) is signed and cannot be pointed at another line.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.models import ProofAttempt, StaffRole, StaffUser
from simkeep.web.security import CSRF_COOKIE, PENDING_COOKIE, SESSION_COOKIE
from tests import factories
from tests.factories import STAFF_PASSWORD
from tests.online import last_code
from tests.replacements.conftest import World
from tests.security.conftest import assert_line_untouched, bearer_of, browser, rows

PLANTED = "planted-by-the-attacker-0123456789"


def portal_sign_in_first_step(
    client: TestClient, token: str, msisdn: str, *, next_url: str = "/portal"
) -> str:
    """Number and password on the portal; returns the pending cookie set for the code step."""
    r = client.post(
        "/portal/sign-in",
        data={
            "csrf": token,
            "msisdn": msisdn,
            "password": factories.PASSWORD,
            "channel": "email",
            "next": next_url,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:500]
    pending = r.cookies.get(PENDING_COOKIE)
    assert isinstance(pending, str) and pending
    return pending


def portal_code_step(
    client: TestClient, token: str, code: str, *, next_url: str = "/portal"
) -> httpx.Response:
    """The code step of the portal's sign-in."""
    response: httpx.Response = client.post(
        "/portal/sign-in/code", data={"csrf": token, "code": code, "next": next_url}, follow_redirects=False
    )
    return response


def signed_in(client: TestClient, path: str, session_token: str) -> bool:
    """Whether ``session_token`` as the only session cookie opens ``path`` (instead of redirecting to sign
    in); the browser keeps its CSRF cookie and is left holding that session cookie."""
    seed = client.cookies.get(CSRF_COOKIE)
    client.cookies.clear()
    if seed:
        client.cookies.set(CSRF_COOKIE, seed)
    client.cookies.set(SESSION_COOKIE, session_token)
    r = client.get(path, follow_redirects=False)
    return bool(r.status_code == 200)


def staff_user(db: Session, role: StaffRole) -> StaffUser:
    """The world's staff user of ``role``."""
    user = db.scalars(select(StaffUser).where(StaffUser.role == role)).first()
    assert user is not None
    return user


class TestSessionReuseAfterSignOut:
    """A session cookie or token copied before the owner signed out."""

    def test_console_cookie_is_dead_after_sign_out(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """A clerk signs in on the console and out again; the copied cookie opens no console page, takes no
        counter action, and the same token is refused by the API (INVALID_TOKEN)."""
        token = browser(world.client, settings)
        user = staff_user(db, StaffRole.CLERK)
        r = world.client.post(
            "/console/sign-in",
            data={"csrf": token, "username": user.username, "password": STAFF_PASSWORD},
            follow_redirects=False,
        )
        assert r.status_code == 303
        copied = r.cookies.get(SESSION_COOKIE)
        assert copied and signed_in(world.client, "/console/counter", copied)
        out = world.client.post("/console/sign-out", data={"csrf": token}, follow_redirects=False)
        assert out.status_code == 303
        assert not signed_in(world.client, "/console/counter", copied)
        before = rows(db)
        world.client.cookies.set(SESSION_COOKIE, copied)
        started = world.client.post(
            "/console/counter/orders",
            data={"csrf": token, "msisdn": world.holder.msisdn, "document_number": factories.DOCUMENT},
            follow_redirects=False,
        )
        assert started.status_code == 303
        assert started.headers["location"].startswith("/console/sign-in")
        api = world.client.get("/api/v1/stock", headers={"Authorization": f"Bearer {copied}"})
        assert (api.status_code, api.json()["code"]) == (401, "INVALID_TOKEN")
        assert rows(db) == before
        assert_line_untouched(db, world.holder)

    def test_portal_cookie_is_dead_after_sign_out(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """A holder signs out of the portal; the copied cookie can neither open the portal nor turn the lock
        on or off, and the API refuses the token."""
        session_token = bearer_of(world.holder_headers())
        token = browser(world.client, settings, session_token=session_token)
        assert signed_in(world.client, "/portal", session_token)
        out = world.client.post("/portal/sign-out", data={"csrf": token}, follow_redirects=False)
        assert out.status_code == 303
        assert not signed_in(world.client, "/portal", session_token)
        before = rows(db)
        world.client.cookies.set(SESSION_COOKIE, session_token)
        r = world.client.post("/portal/lock", data={"csrf": token, "on": "1"}, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/portal/sign-in")
        api = world.client.get(
            f"/api/v1/lines/{world.holder.msisdn}", headers={"Authorization": f"Bearer {session_token}"}
        )
        assert (api.status_code, api.json()["code"]) == (401, "INVALID_TOKEN")
        assert rows(db) == before

    def test_api_sign_out_ends_the_console_session_too(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """A staff token signed out through the API no longer opens the console as a cookie."""
        copied = bearer_of(world.reviewer)
        browser(world.client, settings)
        assert signed_in(world.client, "/console/reviews", copied)
        assert world.client.post("/api/v1/auth/sign-out", headers=world.reviewer).status_code == 204
        assert not signed_in(world.client, "/console/reviews", copied)

    def test_holder_session_does_not_open_the_console(
        self, world: World, db: Session, settings: Settings
    ) -> None:
        """A holder's valid session cookie is not a staff session: the console sends it to staff sign-in."""
        browser(world.client, settings)
        holder = bearer_of(world.holder_headers())
        assert signed_in(world.client, "/portal", holder)
        for path in ("/console", "/console/counter", "/console/reviews", "/console/lines"):
            world.client.cookies.set(SESSION_COOKIE, holder)
            r = world.client.get(path, follow_redirects=False)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/console/sign-in")


class TestSessionFixation:
    """A session id planted in the victim's browser before they sign in."""

    def test_portal_issues_a_new_session(
        self, world: World, db: Session, settings: Settings, outbox: Path
    ) -> None:
        """With a planted session cookie, the portal's sign-in (password, then code) sets a fresh session:
        not the planted value, and the planted value opens nothing afterwards."""
        token = browser(world.client, settings, session_token=PLANTED)
        portal_sign_in_first_step(world.client, token, world.holder.msisdn)
        r = portal_code_step(world.client, token, last_code(outbox))
        assert r.status_code == 303
        issued = r.cookies.get(SESSION_COOKIE)
        assert issued and issued != PLANTED
        assert signed_in(world.client, "/portal", issued)
        assert not signed_in(world.client, "/portal", PLANTED)

    def test_console_issues_a_new_session(self, world: World, db: Session, settings: Settings) -> None:
        """With a planted session cookie, the console's sign-in sets a fresh session; the planted value is
        no session at all."""
        user = staff_user(db, StaffRole.REVIEWER)
        token = browser(world.client, settings, session_token=PLANTED)
        r = world.client.post(
            "/console/sign-in",
            data={"csrf": token, "username": user.username, "password": STAFF_PASSWORD},
            follow_redirects=False,
        )
        assert r.status_code == 303
        issued = r.cookies.get(SESSION_COOKIE)
        assert issued and issued != PLANTED
        assert signed_in(world.client, "/console/reviews", issued)
        assert not signed_in(world.client, "/console/reviews", PLANTED)


class TestForgedHalfwaySignIn:
    """The portal's pending sign-in cookie (number and password checked, code to come)."""

    def test_pending_cookie_pointed_at_another_line_is_refused(
        self, world: World, db: Session, settings: Settings, outbox: Path, victim: factories.Holder
    ) -> None:
        """The attacker passes step one on their own line and rewrites the pending cookie to the victim's
        line id, then enters their own code: the signature fails, no session is opened, nothing changes."""
        token = browser(world.client, settings)
        pending = portal_sign_in_first_step(world.client, token, world.holder.msisdn).strip('"')
        line_id, rest = pending.split(".", 1)
        assert int(line_id) == world.holder.line.id
        forged = f"{victim.line.id}.{rest}"
        world.client.cookies.clear()
        browser(world.client, settings)
        world.client.cookies.set(PENDING_COOKIE, forged)
        before = rows(db)
        r = portal_code_step(world.client, token, last_code(outbox))
        assert r.status_code == 422
        assert SESSION_COOKIE not in r.cookies
        assert rows(db) == before

    def test_pending_cookie_and_code_cannot_be_replayed(
        self, world: World, db: Session, settings: Settings, outbox: Path
    ) -> None:
        """A captured pending cookie and the code typed with it cannot open a second session: the code was
        used, so the replay is a failed, recorded proof."""
        token = browser(world.client, settings)
        pending = portal_sign_in_first_step(world.client, token, world.holder.msisdn)
        code = last_code(outbox)
        first = portal_code_step(world.client, token, code)
        assert first.status_code == 303
        world.client.cookies.clear()
        browser(world.client, settings)
        world.client.cookies.set(PENDING_COOKIE, pending)
        before = rows(db, "proof_attempts", "audit_log")
        replay = portal_code_step(world.client, token, code)
        assert replay.status_code == 422
        assert SESSION_COOKIE not in replay.cookies
        assert rows(db, "proof_attempts", "audit_log") == before
        db.expire_all()
        last = db.scalars(select(ProofAttempt).order_by(ProofAttempt.id.desc()).limit(1)).one()
        assert (last.method, last.action, last.passed) == ("one_time_code", "portal.sign_in", False)


class TestRedirectAfterSignIn:
    """The ``next`` address carried through sign-in."""

    def test_next_cannot_leave_the_site(
        self, world: World, db: Session, settings: Settings, outbox: Path
    ) -> None:
        """A sign-in link with ``next=//evil.example/...`` (a phishing page made to look like the next step)
        lands on the portal's own home instead."""
        token = browser(world.client, settings)
        evil = "//evil.example/portal"
        portal_sign_in_first_step(world.client, token, world.holder.msisdn, next_url=evil)
        r = portal_code_step(world.client, token, last_code(outbox), next_url=evil)
        assert r.status_code == 303
        assert r.headers["location"] == "/portal"


class TestSessionCookieFlags:
    """What a script on a page or another site can do with the session cookie."""

    def test_session_cookies_are_http_only_and_same_site(
        self, world: World, db: Session, settings: Settings, outbox: Path
    ) -> None:
        """The portal's and the console's session cookies (and the half-way sign-in cookie) are HttpOnly
        (no script reads them) and SameSite=Lax (no cross-site POST carries them)."""
        token = browser(world.client, settings)
        first = world.client.post(
            "/portal/sign-in",
            data={"csrf": token, "msisdn": world.holder.msisdn, "password": factories.PASSWORD},
            follow_redirects=False,
        )
        portal = portal_code_step(world.client, token, last_code(outbox))
        browser(world.client, settings)
        user = staff_user(db, StaffRole.ADMIN)
        console = world.client.post(
            "/console/sign-in",
            data={"csrf": token, "username": user.username, "password": STAFF_PASSWORD},
            follow_redirects=False,
        )
        for response, name in ((first, PENDING_COOKIE), (portal, SESSION_COOKIE), (console, SESSION_COOKIE)):
            header = next(h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}="))
            flags = {part.strip().lower() for part in header.split(";")[1:]}
            assert "httponly" in flags, header
            assert "samesite=lax" in flags, header
            assert "path=/" in flags, header
