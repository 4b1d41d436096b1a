"""Signing in and out of the portal and the console, and the language switch, in a real browser."""

from __future__ import annotations

from typing import Any

from simkeep.models import StaffRole
from tests import factories
from tests.web.conftest import LiveServer, seed


def portal_sign_in(page: Any, server: LiveServer, msisdn: str, password: str = factories.PASSWORD) -> None:
    """Sign in to the portal as a holder would: number, password, then the code from the e-mail."""
    page.goto(f"{server.url}/portal/sign-in")
    page.get_by_label("手机号码").fill(msisdn)
    page.get_by_label("服务密码").fill(password)
    page.get_by_role("button", name="继续").click()
    page.get_by_label("6 位验证码").fill(server.last_code())
    page.get_by_role("button", name="登录").click()


def console_sign_in(page: Any, server: LiveServer, username: str) -> None:
    """Sign in to the console as a staff user."""
    page.goto(f"{server.url}/console/sign-in")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码", exact=True).fill(factories.STAFF_PASSWORD)
    page.get_by_role("button", name="登录").click()


class TestPortalSignIn:
    """A holder signs in with number, service password and a code to a registered contact."""

    def test_holder_reaches_home_with_days_left(self, live_server: LiveServer, page: Any) -> None:
        """After the code, home shows the line, its status and the days before recycling."""
        holder = seed(live_server, factories.holder)
        portal_sign_in(page, live_server, holder.msisdn)
        assert page.url.endswith("/portal")
        assert page.get_by_test_id("line-status").inner_text() == "正常"
        assert "天" in page.get_by_test_id("days-left").inner_text()

    def test_wrong_password_is_shown_next_to_the_form(self, live_server: LiveServer, page: Any) -> None:
        """A wrong password keeps the holder on the form with a message, and sends no code."""
        holder = seed(live_server, factories.holder)
        page.goto(f"{live_server.url}/portal/sign-in")
        page.get_by_label("手机号码").fill(holder.msisdn)
        page.get_by_label("服务密码").fill("wrong-password")
        page.get_by_role("button", name="继续").click()
        assert "号码或服务密码不正确" in page.get_by_role("alert").first.inner_text()
        assert page.url.endswith("/portal/sign-in")

    def test_sign_out_ends_the_session(self, live_server: LiveServer, page: Any) -> None:
        """After signing out, home sends the browser back to the sign-in page."""
        holder = seed(live_server, factories.holder)
        portal_sign_in(page, live_server, holder.msisdn)
        page.get_by_test_id("sign-out").click()
        page.goto(f"{live_server.url}/portal")
        assert "/portal/sign-in" in page.url

    def test_home_needs_a_session(self, live_server: LiveServer, page: Any) -> None:
        """Without signing in, home redirects to the sign-in page and comes back after it."""
        page.goto(f"{live_server.url}/portal")
        assert "/portal/sign-in?next=%2Fportal" in page.url


class TestLanguageSwitch:
    """zh-CN by default; English by the switch, remembered."""

    def test_switch_to_english_and_back(self, live_server: LiveServer, page: Any) -> None:
        """The switch turns the page into English and stays so on the next page."""
        page.goto(f"{live_server.url}/portal/sign-in")
        assert page.get_by_role("heading", level=1).inner_text() == "登录"
        page.get_by_test_id("lang-switch").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
        page.goto(f"{live_server.url}/console/sign-in")
        assert page.get_by_role("heading", level=1).inner_text() == "Staff sign-in"


class TestConsoleSignIn:
    """Each staff user signs in with their own name and password."""

    def test_clerk_reaches_the_console(self, live_server: LiveServer, desk_page: Any) -> None:
        """A clerk sees the overview and their name and role."""
        seed(live_server, lambda db, _s: factories.staff(db, StaffRole.CLERK, username="clerk.one"))
        console_sign_in(desk_page, live_server, "clerk.one")
        assert desk_page.get_by_test_id("staff-name").inner_text() == "clerk.one · 营业员"

    def test_wrong_password_is_refused(self, live_server: LiveServer, desk_page: Any) -> None:
        """A wrong password leaves the user on the form with a message."""
        seed(live_server, lambda db, _s: factories.staff(db, StaffRole.CLERK, username="clerk.two"))
        desk_page.goto(f"{live_server.url}/console/sign-in")
        desk_page.get_by_label("用户名").fill("clerk.two")
        desk_page.get_by_label("密码", exact=True).fill("not-it")
        desk_page.get_by_role("button", name="登录").click()
        assert "用户名或密码不正确" in desk_page.get_by_test_id("form-error").inner_text()
