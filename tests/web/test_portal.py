"""The holder's portal pages in a real browser: loss report, reinstatement, the replacement wizard, orders,
the lock, contacts, the password reset and help."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from simkeep.auth.actors import CLI
from simkeep.models import Line, LineStatus, LossReport, OrderState, ReplacementOrder, Subscriber
from simkeep.replacements import service as orders
from tests import factories
from tests.web.conftest import LiveServer, seed
from tests.web.portal_helpers import application_photos, approved_mail_order
from tests.web.test_sign_in import portal_sign_in


def _line(server: LiveServer, msisdn: str) -> Line:
    with server.session() as db:
        line = db.scalar(select(Line).where(Line.msisdn == msisdn))
        assert line is not None
        db.expunge(line)
        return line


class TestLossReport:
    """A SIM is reported lost with little proof, and the suspension lifted with strong proof."""

    def test_report_without_signing_in(self, live_server: LiveServer, page: Any) -> None:
        """The number and the holder's name suspend the line at once, and the page gives a reference."""
        holder = seed(live_server, factories.holder)
        page.goto(f"{live_server.url}/portal/loss-report")
        page.get_by_label("手机号码").fill(holder.msisdn)
        page.get_by_label("机主姓名").fill("张伟")
        page.get_by_label("被盗").check()
        page.get_by_test_id("loss-submit").click()
        assert page.get_by_test_id("loss-reference").inner_text().startswith("LR")
        assert _line(live_server, holder.msisdn).status == LineStatus.SUSPENDED

    def test_wrong_name_changes_nothing(self, live_server: LiveServer, page: Any) -> None:
        """A name that is not the holder's is refused on the form and the line stays active."""
        holder = seed(live_server, factories.holder)
        page.goto(f"{live_server.url}/portal/loss-report")
        page.get_by_label("手机号码").fill(holder.msisdn)
        page.get_by_label("机主姓名").fill("李四")
        page.get_by_test_id("loss-submit").click()
        assert "信息不符" in page.get_by_test_id("form-error").inner_text()
        assert _line(live_server, holder.msisdn).status == LineStatus.ACTIVE

    def test_neither_name_nor_document_is_shown_next_to_the_field(
        self, live_server: LiveServer, page: Any
    ) -> None:
        """Without a name or document number the form says so next to the name field."""
        holder = seed(live_server, factories.holder)
        page.goto(f"{live_server.url}/portal/loss-report")
        page.get_by_label("手机号码").fill(holder.msisdn)
        page.get_by_test_id("loss-submit").click()
        assert "请填写机主姓名或证件号码" in page.locator("#e-real_name").inner_text()
        assert _line(live_server, holder.msisdn).status == LineStatus.ACTIVE

    def test_signed_in_report_then_reinstate(self, live_server: LiveServer, page: Any) -> None:
        """Signed in, one confirmation suspends; the password and a code sent from the page lift it."""
        holder = seed(live_server, factories.holder)
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/loss-report")
        page.get_by_test_id("loss-submit").click()
        page.get_by_test_id("loss-done").wait_for()
        assert _line(live_server, holder.msisdn).status == LineStatus.SUSPENDED

        page.goto(f"{live_server.url}/portal/reinstate")
        page.get_by_test_id("send-code").click()
        page.get_by_test_id("code-sent").wait_for()
        page.get_by_label("服务密码").fill(factories.PASSWORD)
        page.get_by_label("6 位验证码").fill(live_server.last_code())
        page.get_by_test_id("reinstate-submit").click()
        page.get_by_test_id("reinstated").wait_for()
        assert _line(live_server, holder.msisdn).status == LineStatus.ACTIVE

    def test_reinstate_with_a_wrong_code_changes_nothing(self, live_server: LiveServer, page: Any) -> None:
        """A wrong code is shown next to the code field and the line stays suspended."""
        holder = seed(live_server, factories.holder)
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/loss-report")
        page.get_by_test_id("loss-submit").click()
        page.goto(f"{live_server.url}/portal/reinstate")
        page.get_by_test_id("send-code").click()
        code = live_server.last_code()
        page.get_by_label("服务密码").fill(factories.PASSWORD)
        page.get_by_label("6 位验证码").fill("000000" if code != "000000" else "111111")
        page.get_by_test_id("reinstate-submit").click()
        assert "验证码错误" in page.get_by_test_id("error-code").inner_text()
        assert _line(live_server, holder.msisdn).status == LineStatus.SUSPENDED
        with live_server.session() as db:
            assert db.scalar(select(LossReport.status)) == "open"


class TestReplacementWizard:
    """The online replacement, from eligibility to the outcome page, with real photos."""

    def test_mail_replacement_is_approved_with_real_photos(
        self, live_server: LiveServer, page: Any, tmp_path: Path
    ) -> None:
        """Channel and fee, both photos, address and code: the outcome page says approved, pay next."""
        holder = seed(live_server, factories.holder)
        document, selfie = application_photos(tmp_path)
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/apply")
        page.get_by_test_id("eligible").wait_for()
        assert page.get_by_test_id("fee-online_mail").inner_text().endswith("10.00 CNY")
        page.get_by_test_id("choose-channel").click()
        page.get_by_label("证件人像页照片").set_input_files(document)
        page.locator("#f-selfie").set_input_files(selfie)
        page.get_by_test_id("upload-photos").click()
        page.get_by_test_id("photos-ok").wait_for()
        page.get_by_label("证件号码").fill(factories.DOCUMENT)
        page.get_by_test_id("send-code").click()
        page.get_by_test_id("code-sent").wait_for()
        assert page.get_by_label("证件号码").input_value() == factories.DOCUMENT
        page.get_by_label("6 位验证码").fill(live_server.last_code())
        page.get_by_test_id("submit-application").click()
        assert page.get_by_test_id("outcome-state").inner_text() == "待支付"
        assert "10.00 CNY" in page.get_by_test_id("outcome-message").inner_text()
        with live_server.session() as db:
            order = db.scalar(select(ReplacementOrder))
            assert order is not None
            assert order.state == OrderState.AWAITING_PAYMENT
            assert order.delivery_address is not None

    def test_order_is_paid_shipped_and_activated(self, live_server: LiveServer, page: Any) -> None:
        """Pay by reference, follow the parcel with its expected date, then activate with the ICCID digits."""
        holder = seed(live_server, factories.holder)
        reference = seed(live_server, lambda db, s: approved_mail_order(db, s, holder.msisdn))
        new_sim = seed(live_server, lambda db, _s: factories.sim(db))
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/orders/{reference}")
        page.get_by_label("支付流水号").fill("PAY-123456")
        page.get_by_test_id("pay").click()
        assert page.get_by_test_id("order-state").inner_text() == "已配卡"
        seed(live_server, lambda db, s: orders.ship(db, s, actor=CLI, reference=reference))
        page.reload()
        assert page.get_by_test_id("order-state").inner_text() == "已寄出"
        assert page.get_by_test_id("eta").inner_text().startswith("预计送达")
        assert "已下单" in page.get_by_test_id("parcel-journey").inner_text()
        page.get_by_label("ICCID 最后 6 位").fill("000000")
        page.get_by_test_id("activate").click()
        assert page.locator("#e-iccid_digits").is_visible()
        assert page.get_by_test_id("order-state").inner_text() == "已寄出"
        page.get_by_label("ICCID 最后 6 位").fill(new_sim.iccid[-6:])
        page.get_by_test_id("activate").click()
        assert page.get_by_test_id("order-state").inner_text() == "已激活"
        assert "已寄出" in page.get_by_test_id("timeline").inner_text()

    def test_another_holders_order_is_not_found(self, live_server: LiveServer, page: Any) -> None:
        """A holder opening another holder's order reads "not found", as for one that does not exist."""
        owner = seed(live_server, factories.holder)
        other = seed(live_server, lambda db, s: factories.holder(db, s, name="李四"))
        reference = seed(live_server, lambda db, s: approved_mail_order(db, s, owner.msisdn))
        portal_sign_in(page, live_server, other.msisdn)
        page.goto(f"{live_server.url}/portal/orders/{reference}")
        assert page.get_by_test_id("not-found").inner_text() == "未找到该申请。"
        assert page.get_by_test_id("pay").count() == 0

    def test_wrong_code_is_shown_next_to_the_field_and_makes_no_order(
        self, live_server: LiveServer, page: Any, tmp_path: Path
    ) -> None:
        """A wrong code keeps the holder on the details with the error at the code; no order exists."""
        holder = seed(live_server, factories.holder)
        document, selfie = application_photos(tmp_path)
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/apply/photos?channel=esim")
        page.get_by_label("证件人像页照片").set_input_files(document)
        page.locator("#f-selfie").set_input_files(selfie)
        page.get_by_test_id("upload-photos").click()
        page.get_by_label("证件号码").fill(factories.DOCUMENT)
        page.get_by_test_id("send-code").click()
        code = live_server.last_code()
        page.get_by_label("6 位验证码").fill("000000" if code != "000000" else "111111")
        page.get_by_test_id("submit-application").click()
        assert "验证码错误" in page.get_by_test_id("error-code").inner_text()
        with live_server.session() as db:
            assert db.scalar(select(ReplacementOrder)) is None

    def test_lock_on_explains_why_not(self, live_server: LiveServer, page: Any) -> None:
        """With the SIM-change lock on, the wizard says so and offers the lock page instead of a channel."""

        def locked(db: Any, settings: Any) -> factories.Holder:
            made = factories.holder(db, settings)
            made.line.sim_change_lock = True
            return made

        holder = seed(live_server, locked)
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/apply")
        assert "换卡保护" in page.get_by_test_id("why-lock").inner_text()
        assert page.get_by_test_id("choose-channel").count() == 0

    def test_store_channel_lists_the_stores(self, live_server: LiveServer, page: Any) -> None:
        """Choosing a store explains to bring the ID card and lists the stores."""
        holder = seed(live_server, factories.holder)
        seed(live_server, lambda db, _s: factories.store(db, "BJ01"))
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/apply")
        page.get_by_label("到营业厅办理").check()
        page.get_by_test_id("choose-channel").click()
        assert "身份证件原件" in page.get_by_test_id("store-advice").inner_text()
        assert "Store" in page.get_by_test_id("stores").inner_text()


class TestProtection:
    """The SIM-change lock and the contacts: riskier changes need a code."""

    def test_lock_on_then_off_with_a_code(self, live_server: LiveServer, page: Any) -> None:
        """The lock goes on with one press, and off only with the code sent from the page."""
        holder = seed(live_server, factories.holder)
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/lock")
        page.get_by_test_id("lock-on").click()
        assert page.get_by_test_id("lock-state").inner_text() == "已开启"
        assert _line(live_server, holder.msisdn).sim_change_lock
        page.get_by_test_id("lock-off").click()
        assert page.get_by_test_id("error-code").is_visible()
        assert _line(live_server, holder.msisdn).sim_change_lock
        page.get_by_test_id("send-code").click()
        page.get_by_label("6 位验证码").fill(live_server.last_code())
        page.get_by_test_id("lock-off").click()
        assert page.get_by_test_id("lock-state").inner_text() == "未开启"
        assert not _line(live_server, holder.msisdn).sim_change_lock

    def test_contact_phone_cannot_be_the_line(self, live_server: LiveServer, page: Any) -> None:
        """The line's own number as contact phone is refused next to the field; the contacts stay."""
        holder = seed(live_server, factories.holder)
        portal_sign_in(page, live_server, holder.msisdn)
        page.goto(f"{live_server.url}/portal/contacts")
        page.get_by_test_id("send-code").click()
        page.get_by_label("其他手机号").fill(holder.msisdn)
        page.get_by_label("6 位验证码").fill(live_server.last_code())
        page.get_by_test_id("contacts-submit").click()
        assert "不能是本号码" in page.locator("#e-phone").inner_text()
        with live_server.session() as db:
            assert db.get(Subscriber, holder.subscriber.id).contact_phone is None  # type: ignore[union-attr]


class TestHelp:
    """The FAQ answers what holders ask, without signing in."""

    def test_faq_shows_fees_and_answers(self, live_server: LiveServer, page: Any) -> None:
        """Fees per channel, the stolen SIM, the unchanged number and the bank are answered."""
        page.goto(f"{live_server.url}/portal/help")
        assert "10.00 CNY" in page.get_by_test_id("a-fee").inner_text()
        assert "挂失" in page.get_by_test_id("a-stolen").inner_text()
        assert "不会" in page.get_by_test_id("a-number").inner_text()
        assert "银行" in page.get_by_test_id("a-bank").inner_text()


class TestPasswordReset:
    """A holder who forgot the service password sets a new one with a code and the document number."""

    def test_reset_then_sign_in_with_the_new_password(self, live_server: LiveServer, page: Any) -> None:
        """The code goes to the registered e-mail; the new password signs in."""
        holder = seed(live_server, factories.holder)
        page.goto(f"{live_server.url}/portal/password-reset")
        page.get_by_label("手机号码").fill(holder.msisdn)
        page.get_by_label("证件号码").fill(factories.DOCUMENT)
        page.get_by_role("button", name="发送验证码").click()
        assert page.get_by_test_id("reset-sent").is_visible()
        page.get_by_label("6 位验证码").fill(live_server.last_code())
        page.get_by_label("新服务密码").fill("Harbour-Lights-73")
        page.get_by_label("再次输入新密码").fill("Harbour-Lights-73")
        page.get_by_test_id("reset-submit").click()
        assert page.get_by_test_id("reset-done").is_visible()
        portal_sign_in(page, live_server, holder.msisdn, password="Harbour-Lights-73")
        assert page.url.endswith("/portal")

    def test_weak_password_is_refused_at_the_field(self, live_server: LiveServer, page: Any) -> None:
        """A password made of the phone number is refused next to the field; the old password still works."""
        holder = seed(live_server, factories.holder)
        page.goto(f"{live_server.url}/portal/password-reset")
        page.get_by_label("手机号码").fill(holder.msisdn)
        page.get_by_label("证件号码").fill(factories.DOCUMENT)
        page.get_by_role("button", name="发送验证码").click()
        page.get_by_label("6 位验证码").fill(live_server.last_code())
        weak = holder.msisdn[-8:]
        page.get_by_label("新服务密码").fill(weak)
        page.get_by_label("再次输入新密码").fill(weak)
        page.get_by_test_id("reset-submit").click()
        assert "太容易被猜到" in page.locator("#e-new_password").inner_text()
        portal_sign_in(page, live_server, holder.msisdn)
        assert page.url.endswith("/portal")
