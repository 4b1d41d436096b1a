"""The staff console's pages in a real browser: the store counter, reviews, lines, stock and the dashboard."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from simkeep.models import AuditEntry, Line, LineStatus, ReplacementOrder, Sim, SimStatus, StaffRole
from tests import factories
from tests.web import console_helpers as helpers
from tests.web.conftest import LiveServer, seed
from tests.web.test_sign_in import console_sign_in


def _order_count(server: LiveServer, line_id: int) -> int:
    with server.session() as db:
        return int(
            db.scalar(
                select(func.count()).select_from(ReplacementOrder).where(ReplacementOrder.line_id == line_id)
            )
            or 0
        )


class TestStoreCounter:
    """A clerk replaces a SIM at the counter in a few screens."""

    def test_replacement_end_to_end(self, live_server: LiveServer, desk_page: Any) -> None:
        """Find, check the document, take cash, scan the SIM, activate: the number is on the new SIM."""
        data = seed(live_server, helpers.counter)
        page = desk_page
        console_sign_in(page, live_server, data.clerk)
        page.goto(f"{live_server.url}/console/counter")
        page.get_by_label("手机号码").fill(data.msisdn)
        page.get_by_role("button", name="查找").click()
        assert page.get_by_test_id("line-msisdn").inner_text() == data.msisdn
        page.get_by_label("证件号码（照证件原件输入）").fill(factories.DOCUMENT)
        page.get_by_label("我已将本人面部与证件照片比对，确认为同一人").check()
        page.get_by_test_id("start-order").click()
        assert page.get_by_test_id("order-state").inner_text() == "待支付"
        assert "10.00 CNY" in page.get_by_test_id("fee").inner_text()
        page.get_by_test_id("pay-cash").click()
        assert page.get_by_test_id("order-state").inner_text() == "已支付"
        page.get_by_label("新卡 ICCID（扫码或输入）").fill(data.own_iccid)
        page.get_by_test_id("assign-sim").click()
        assert page.get_by_test_id("order-state").inner_text() == "已配卡"
        page.get_by_test_id("activate").click()
        assert page.get_by_test_id("final-msisdn").inner_text() == data.msisdn
        with live_server.session() as db:
            line = db.get(Line, data.line_id)
            assert line is not None
            sim = db.get(Sim, line.sim_id)
            assert sim is not None
            assert sim.iccid == data.own_iccid
            assert sim.status == SimStatus.ACTIVE
            assert line.status == LineStatus.ACTIVE


def _audit_actions(server: LiveServer, action: str) -> list[AuditEntry]:
    with server.session() as db:
        return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def _order_state(server: LiveServer, reference: str) -> str:
    with server.session() as db:
        state = db.scalar(select(ReplacementOrder.state).where(ReplacementOrder.reference == reference))
        return str(state)


def _reviewer(server: LiveServer, name: str = "rev.one") -> str:
    seed(server, lambda db, _s: factories.staff(db, StaffRole.REVIEWER, username=name))
    return name


class TestReviewQueue:
    """Reviewers decide online orders the checks sent to a person."""

    def test_queue_lists_oldest_first(self, live_server: LiveServer, desk_page: Any) -> None:
        """Two orders in review are listed, the older one first, with the number masked."""
        first = seed(live_server, lambda db, s: helpers.online_in_review(db, s, name="李娜"))
        second = seed(live_server, lambda db, s: helpers.online_in_review(db, s, name="王芳"))
        console_sign_in(desk_page, live_server, _reviewer(live_server))
        desk_page.goto(f"{live_server.url}/console/reviews")
        rows = desk_page.get_by_test_id("review-row")
        assert rows.count() == 2
        assert first.reference in rows.nth(0).inner_text()
        assert second.reference in rows.nth(1).inner_text()
        assert first.msisdn not in desk_page.content()

    def test_review_page_masks_until_revealed_and_audits(
        self, live_server: LiveServer, desk_page: Any
    ) -> None:
        """Photos are served through audited openings; name and number show only after an audited reveal."""
        order = seed(live_server, helpers.online_in_review)
        console_sign_in(desk_page, live_server, _reviewer(live_server))
        desk_page.goto(f"{live_server.url}/console/reviews/{order.reference}")
        desk_page.wait_for_load_state("networkidle")
        assert desk_page.get_by_test_id("applicant-name").inner_text() == "李*"
        assert desk_page.get_by_test_id("applicant-msisdn").inner_text() != order.msisdn
        assert desk_page.get_by_test_id("verdict-review").count() >= 1
        for kind in ("document_photo", "selfie"):
            width = desk_page.get_by_test_id(f"photo-{kind}").evaluate("img => img.naturalWidth")
            assert width > 0
        viewed = _audit_actions(live_server, "evidence.viewed")
        assert {e.data["kind"] for e in viewed} == {"document_photo", "selfie"}
        assert all(e.subject_id == order.reference for e in viewed)
        assert _audit_actions(live_server, "personal_data.revealed") == []
        desk_page.get_by_test_id("reveal").click()
        assert desk_page.get_by_test_id("applicant-name").inner_text() == "李娜"
        assert desk_page.get_by_test_id("applicant-msisdn").inner_text() == order.msisdn
        revealed = _audit_actions(live_server, "personal_data.revealed")
        assert [(e.actor, e.subject_id) for e in revealed] == [("staff:rev.one", order.reference)]

    def test_evidence_route_is_not_cached(self, live_server: LiveServer, desk_page: Any) -> None:
        """The image route answers with cache-control: no-store."""
        order = seed(live_server, helpers.online_in_review)
        console_sign_in(desk_page, live_server, _reviewer(live_server))
        desk_page.goto(f"{live_server.url}/console/reviews/{order.reference}")
        src = desk_page.get_by_test_id("photo-selfie").get_attribute("src")
        response = desk_page.request.get(f"{live_server.url}{src}")
        assert response.status == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-type"].startswith("image/")

    def test_approve(self, live_server: LiveServer, desk_page: Any) -> None:
        """Approving with a reason moves the order on to payment and empties the queue."""
        order = seed(live_server, helpers.online_in_review)
        console_sign_in(desk_page, live_server, _reviewer(live_server))
        desk_page.goto(f"{live_server.url}/console/reviews/{order.reference}")
        desk_page.get_by_label("原因（将告知申请人）").fill("证件与自拍一致")
        desk_page.get_by_test_id("approve").click()
        assert order.reference in desk_page.get_by_role("status").inner_text()
        assert desk_page.get_by_test_id("review-empty").is_visible()
        assert _order_state(live_server, order.reference) == "awaiting_payment"

    def test_reject(self, live_server: LiveServer, desk_page: Any) -> None:
        """Rejecting with a reason closes the order."""
        order = seed(live_server, helpers.online_in_review)
        console_sign_in(desk_page, live_server, _reviewer(live_server))
        desk_page.goto(f"{live_server.url}/console/reviews/{order.reference}")
        desk_page.get_by_label("原因（将告知申请人）").fill("自拍与证件照片不是同一人")
        desk_page.get_by_test_id("reject").click()
        assert _order_state(live_server, order.reference) == "rejected"

    def test_decision_needs_a_reason(self, live_server: LiveServer, desk_page: Any) -> None:
        """A decision without a reason is refused next to the field and the order stays in review."""
        order = seed(live_server, helpers.online_in_review)
        console_sign_in(desk_page, live_server, _reviewer(live_server))
        desk_page.goto(f"{live_server.url}/console/reviews/{order.reference}")
        desk_page.get_by_test_id("approve").click()
        assert desk_page.locator("#e-reason").inner_text() == "必填"
        assert _order_state(live_server, order.reference) == "in_review"


class TestRoles:
    """Each page is for its roles; others get an error page and see nothing of it."""

    def test_clerk_cannot_reach_reviewer_or_admin_pages(
        self, live_server: LiveServer, desk_page: Any
    ) -> None:
        """The review queue, a review, a photo, the dashboard and stock admin refuse a clerk."""
        data = seed(live_server, helpers.counter)
        order = seed(live_server, helpers.online_in_review)
        console_sign_in(desk_page, live_server, data.clerk)
        for path in ("/console/reviews", f"/console/reviews/{order.reference}", "/console/dashboard"):
            response = desk_page.goto(f"{live_server.url}{path}")
            assert response.status == 403, path
            assert desk_page.get_by_test_id("error-message").inner_text() == "您的角色不能使用此页面。"
            assert order.reference not in desk_page.locator("main").inner_text()
        assert _audit_actions(live_server, "replacement.review_opened") == []

    def test_reviewer_cannot_use_the_counter(self, live_server: LiveServer, desk_page: Any) -> None:
        """The counter refuses a reviewer."""
        console_sign_in(desk_page, live_server, _reviewer(live_server))
        response = desk_page.goto(f"{live_server.url}/console/counter")
        assert response.status == 403
        assert desk_page.get_by_test_id("error-message").is_visible()
        assert desk_page.get_by_test_id("start-order").count() == 0


class TestCounterRefusals:
    """Bad input at the counter is shown next to its field and changes nothing."""

    def _start(self, page: Any, server: LiveServer, data: helpers.Counter, document: str) -> None:
        console_sign_in(page, server, data.clerk)
        page.goto(f"{server.url}/console/counter?msisdn={data.msisdn.replace('+', '%2B')}")
        page.get_by_label("证件号码（照证件原件输入）").fill(document)
        page.get_by_label("我已将本人面部与证件照片比对，确认为同一人").check()
        page.get_by_test_id("start-order").click()

    def test_wrong_document_number(self, live_server: LiveServer, desk_page: Any) -> None:
        """A document number that is not the holder's is refused at the field; no order is opened."""
        data = seed(live_server, helpers.counter)
        self._start(desk_page, live_server, data, "110105194912310029")
        assert desk_page.locator("#e-document_number").inner_text() == "证件号码与登记的机主不符。"
        assert desk_page.get_by_label("证件号码（照证件原件输入）").input_value() == ""
        assert _order_count(live_server, data.line_id) == 0
        assert len(_audit_actions(live_server, "proof.failed")) == 1

    def test_face_not_compared(self, live_server: LiveServer, desk_page: Any) -> None:
        """Without confirming the face check, the order is not opened."""
        data = seed(live_server, helpers.counter)
        console_sign_in(desk_page, live_server, data.clerk)
        desk_page.goto(f"{live_server.url}/console/counter?msisdn={data.msisdn.replace('+', '%2B')}")
        desk_page.get_by_label("证件号码（照证件原件输入）").fill(factories.DOCUMENT)
        desk_page.get_by_test_id("start-order").click()
        assert desk_page.locator("#e-face_checked").inner_text() == "请先比对本人面部与证件照片。"
        assert _order_count(live_server, data.line_id) == 0

    def test_unknown_number(self, live_server: LiveServer, desk_page: Any) -> None:
        """A number that is no line is said so next to the search field."""
        data = seed(live_server, helpers.counter)
        console_sign_in(desk_page, live_server, data.clerk)
        desk_page.goto(f"{live_server.url}/console/counter")
        desk_page.get_by_label("手机号码").fill("+8613912345678")
        desk_page.get_by_role("button", name="查找").click()
        assert desk_page.locator("#e-msisdn").inner_text() == "没有这个号码。"

    def test_sim_of_another_store_is_refused(self, live_server: LiveServer, desk_page: Any) -> None:
        """An ICCID from another store or the warehouse is refused at the field; the order waits."""
        data = seed(live_server, helpers.counter)
        self._start(desk_page, live_server, data, factories.DOCUMENT)
        desk_page.get_by_label("减免原因").fill("老人优惠")
        desk_page.get_by_test_id("waive").click()
        assert desk_page.get_by_test_id("order-state").inner_text() == "已支付"
        for iccid in (data.other_iccid, data.warehouse_iccid):
            desk_page.get_by_label("新卡 ICCID（扫码或输入）").fill(iccid)
            desk_page.get_by_test_id("assign-sim").click()
            error = desk_page.locator("#e-iccid").inner_text()
            assert error == "该 SIM 卡不在本营业厅库存中（或类型不符、已被使用）。"
            assert desk_page.get_by_test_id("order-state").inner_text() == "已支付"
        with live_server.session() as db:
            statuses = set(
                db.scalars(select(Sim.status).where(Sim.iccid.in_([data.other_iccid, data.warehouse_iccid])))
            )
            assert statuses == {SimStatus.IN_STOCK}
            order = db.scalar(select(ReplacementOrder).where(ReplacementOrder.line_id == data.line_id))
            assert order is not None
            assert order.new_sim_id is None
            assert order.fee_waived


class TestLines:
    """Staff find a line by number, ICCID or name and read its history."""

    def test_search_and_line_page(self, live_server: LiveServer, desk_page: Any) -> None:
        """Searching by ICCID and by name finds the line; its page lists SIM changes and audit entries."""
        data = seed(live_server, helpers.counter)
        with live_server.session() as db:
            line = db.get(Line, data.line_id)
            assert line is not None
            sim = db.get(Sim, line.sim_id)
            assert sim is not None
            iccid = sim.iccid
        console_sign_in(desk_page, live_server, data.clerk)
        desk_page.goto(f"{live_server.url}/console/lines")
        desk_page.get_by_label("号码、ICCID 或机主姓名").fill(iccid)
        desk_page.get_by_role("button", name="搜索").click()
        assert desk_page.get_by_test_id("line-row").count() == 1
        desk_page.get_by_label("号码、ICCID 或机主姓名").fill("张")
        desk_page.get_by_role("button", name="搜索").click()
        assert desk_page.get_by_test_id("line-row").count() == 1
        assert data.msisdn not in desk_page.locator("main").inner_text()
        desk_page.get_by_role("link", name="查看").click()
        assert desk_page.get_by_test_id("holder-name").inner_text() == "张*"
        assert "开户" in desk_page.get_by_test_id("sim-changes").inner_text()
        desk_page.get_by_test_id("reveal").click()
        assert desk_page.get_by_test_id("line-msisdn").inner_text() == data.msisdn
        assert "personal_data.revealed" in desk_page.get_by_test_id("line-audit").inner_text()

    def test_bad_number_is_shown_next_to_the_field(self, live_server: LiveServer, desk_page: Any) -> None:
        """A search for something that is not a valid number says so at the field."""
        data = seed(live_server, helpers.counter)
        console_sign_in(desk_page, live_server, data.clerk)
        desk_page.goto(f"{live_server.url}/console/lines?q=%2B12")
        assert desk_page.locator("#e-q").is_visible()


def _admin(server: LiveServer, name: str = "admin.one") -> str:
    seed(server, lambda db, _s: factories.staff(db, StaffRole.ADMIN, username=name))
    return name


def _stock_csv(rows: list[str]) -> bytes:
    return ("iccid,imsi,kind,location,store,batch\n" + "\n".join(rows) + "\n").encode()


class TestStock:
    """Admins import stock files and move SIMs; clerks see their store's counts."""

    def test_import_reports_bad_rows_by_line(self, live_server: LiveServer, desk_page: Any) -> None:
        """Good rows are imported; each bad row is listed with its line number and column."""
        seed(live_server, lambda db, _s: factories.store(db, code="BJ01"))
        good = f"{factories.make_iccid(900001)},{factories.make_imsi(900001)},physical,store,BJ01,b1"
        bad_kind = f"{factories.make_iccid(900002)},{factories.make_imsi(900002)},plastic,warehouse,,b1"
        bad_iccid = f"8986010000000000001,{factories.make_imsi(900003)},physical,warehouse,,b1"
        console_sign_in(desk_page, live_server, _admin(live_server))
        desk_page.goto(f"{live_server.url}/console/stock")
        desk_page.get_by_label("CSV 文件").set_input_files(
            {"name": "stock.csv", "mimeType": "text/csv", "buffer": _stock_csv([good, bad_kind, bad_iccid])}
        )
        desk_page.get_by_test_id("do-import").click()
        assert (
            desk_page.get_by_test_id("import-summary").inner_text() == "共 3 行：导入 1，已存在 0，拒绝 2。"
        )
        errors = desk_page.get_by_test_id("import-error")
        assert errors.count() == 2
        assert errors.nth(0).inner_text().split("\t")[:2] == ["3", "kind"]
        assert errors.nth(1).inner_text().split("\t")[:2] == ["4", "iccid"]
        assert "1" in desk_page.get_by_test_id("stock-counts").inner_text()

    def test_import_of_a_file_over_one_megabyte(self, live_server: LiveServer, desk_page: Any) -> None:
        """The import path takes files past the 1 MB body limit of other pages."""
        rows = [
            f"{factories.make_iccid(800000 + i)},{factories.make_imsi(800000 + i)},physical,warehouse,,big"
            for i in range(22_000)
        ]
        body = _stock_csv(rows)
        assert len(body) > 1_000_000
        console_sign_in(desk_page, live_server, _admin(live_server))
        desk_page.goto(f"{live_server.url}/console/stock")
        desk_page.get_by_label("CSV 文件").set_input_files(
            {"name": "big.csv", "mimeType": "text/csv", "buffer": body}
        )
        desk_page.get_by_test_id("do-import").click()
        assert "导入 22000" in desk_page.get_by_test_id("import-summary").inner_text()

    def test_unreadable_file_is_refused_at_the_field(self, live_server: LiveServer, desk_page: Any) -> None:
        """A file with the wrong header imports nothing and says why next to the file field."""
        console_sign_in(desk_page, live_server, _admin(live_server))
        desk_page.goto(f"{live_server.url}/console/stock")
        desk_page.get_by_label("CSV 文件").set_input_files(
            {"name": "x.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n"}
        )
        desk_page.get_by_test_id("do-import").click()
        assert desk_page.locator("#e-file").inner_text().startswith("无法导入此文件")
        with live_server.session() as db:
            assert db.scalar(select(func.count()).select_from(Sim)) == 0

    def test_transfer_from_warehouse_to_store(self, live_server: LiveServer, desk_page: Any) -> None:
        """Moving SIMs to a store changes their place and is audited; asking for too many changes nothing."""

        def make(db: Any, _s: Any) -> None:
            factories.store(db, code="SH01")
            for _ in range(3):
                factories.sim(db)

        seed(live_server, make)
        console_sign_in(desk_page, live_server, _admin(live_server))
        desk_page.goto(f"{live_server.url}/console/stock")
        desk_page.get_by_label("调出").select_option("warehouse")
        desk_page.get_by_label("调入").select_option("SH01")
        desk_page.get_by_label("数量", exact=True).fill("5")
        desk_page.get_by_test_id("do-transfer").click()
        assert desk_page.locator("#e-quantity").is_visible()
        desk_page.get_by_label("数量", exact=True).fill("2")
        desk_page.get_by_test_id("do-transfer").click()
        assert desk_page.get_by_role("status").inner_text() == "已调拨 2 张。"
        with live_server.session() as db:
            assert db.scalar(select(func.count()).select_from(Sim).where(Sim.store_id.is_not(None))) == 2
        assert [e.data["quantity"] for e in _audit_actions(live_server, "sims.transferred")] == [2]

    def test_clerk_sees_own_store_read_only(self, live_server: LiveServer, desk_page: Any) -> None:
        """A clerk sees their store's counts only, and no import or transfer form."""
        data = seed(live_server, helpers.counter)
        console_sign_in(desk_page, live_server, data.clerk)
        desk_page.goto(f"{live_server.url}/console/stock")
        assert desk_page.get_by_test_id("stock-row").count() == 1
        assert desk_page.get_by_test_id("do-import").count() == 0
        assert desk_page.get_by_test_id("do-transfer").count() == 0


class TestDashboard:
    """Reviewers and admins see the charts, drawn on the server."""

    def test_charts_render(self, live_server: LiveServer, desk_page: Any) -> None:
        """Each of the five charts is an SVG; an order in review shows as bars."""
        seed(live_server, helpers.online_in_review)
        console_sign_in(desk_page, live_server, _reviewer(live_server))
        desk_page.goto(f"{live_server.url}/console/dashboard")
        for key in ("per-day", "open", "activation", "verdicts", "days-left"):
            assert desk_page.get_by_test_id(f"chart-{key}").locator("svg").count() == 1
        assert desk_page.get_by_test_id("chart-per-day").get_by_test_id("bar").count() == 1
        assert desk_page.get_by_test_id("chart-verdicts").get_by_test_id("bar").count() >= 3
        assert desk_page.get_by_test_id("chart-days-left").get_by_test_id("bar").count() == 1


class TestConsoleLanguage:
    """The console pages speak English after the switch."""

    def test_counter_in_english(self, live_server: LiveServer, desk_page: Any) -> None:
        """The counter's labels and refusals are in English once the switch is used."""
        data = seed(live_server, helpers.counter)
        console_sign_in(desk_page, live_server, data.clerk)
        desk_page.goto(f"{live_server.url}/console/counter")
        desk_page.get_by_test_id("lang-switch").click()
        assert desk_page.get_by_role("heading", level=1).inner_text() == "Replacement at the counter"
        desk_page.get_by_label("Phone number").fill("+8613912345678")
        desk_page.get_by_role("button", name="Find").click()
        assert desk_page.locator("#e-msisdn").inner_text() == "No such line."
