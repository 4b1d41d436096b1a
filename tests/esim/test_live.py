"""The eSIM replacement end to end over real HTTP: simkeep in uvicorn, the SM-DP+ test double calling it
back, the worker carrying out the jobs, and the holder's order page in headless Chromium."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import Engine, select

from simkeep.app import create_app
from simkeep.config import Settings
from simkeep.db.engine import make_session_factory
from simkeep.esim import service
from simkeep.jobs.worker import Worker
from simkeep.models import EsimProfile, EsimProfileState, Job, OrderState, ReplacementOrder, SimKind
from simkeep.network.adapter import network_for
from simkeep.notifications.transports import read_outbox
from tests import factories
from tests.esim.conftest import Smdp, esim_settings, free_port, paid_esim_order, serve
from tests.web.conftest import LiveServer, browser, page, seed  # noqa: F401 - the browser fixtures
from tests.web.test_sign_in import portal_sign_in


@contextmanager
def _server(fresh: tuple[Engine, Settings], smdp: Smdp, **extra: Any) -> Iterator[LiveServer]:
    engine, base = fresh
    outbox = Path(base.otp_outbox_dir)
    settings = esim_settings(base.database_url, outbox, smdp.url, **extra)
    port = free_port()
    server, thread = serve(create_app(settings), port)
    smdp.state.callback_url = f"http://127.0.0.1:{port}"
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, engine, outbox)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def esim_server(fresh: tuple[Engine, Settings], smdp: Smdp) -> Iterator[LiveServer]:
    """simkeep on a free loopback port with the eSIM channel pointed at the double, which calls it back."""
    with _server(fresh, smdp) as server:
        yield server


@pytest.fixture
def holder_mode_server(fresh: tuple[Engine, Settings], smdp: Smdp) -> Iterator[LiveServer]:
    """The same, with the number moved on the holder's confirmation (SIMKEEP_ESIM_ACTIVATE_ON=holder)."""
    with _server(fresh, smdp, esim_activate_on="holder") as server:
        yield server


def _work(server: LiveServer) -> None:
    """The worker runs every due job, committing per batch as in production."""
    Worker(server.settings, make_session_factory(server.engine), worker_id="test-worker").run(
        exit_when_idle=True
    )


def _released_order(server: LiveServer, smdp: Smdp, **holder_args: Any) -> tuple[factories.Holder, str, str]:
    """A holder with a paid eSIM order whose profile the worker released: (holder, reference, iccid)."""
    esim = seed(server, lambda db, _s: factories.sim(db, kind=SimKind.ESIM))
    smdp.load(esim.iccid)
    holder = seed(server, lambda db, s: factories.holder(db, s, **holder_args))
    reference = seed(server, lambda db, s: paid_esim_order(db, s, holder).reference)
    _work(server)
    return holder, reference, esim.iccid


def _profile(server: LiveServer, reference: str) -> EsimProfile:
    with server.session() as db:
        order = db.scalar(select(ReplacementOrder).where(ReplacementOrder.reference == reference))
        assert order is not None
        profile = db.scalar(select(EsimProfile).where(EsimProfile.order_id == order.id))
        assert profile is not None
        db.expunge(profile)
        return profile


def _confirmation_code(server: LiveServer) -> str:
    sent = [m for m in read_outbox(server.outbox) if m.template == "esim_confirmation_code"]
    found = re.search(r"\b(\d{8})\b", sent[-1].body)
    assert found is not None
    return found.group(1)


class TestEndToEnd:
    """Approval to activation code to installed callback to the number on the eSIM."""

    def test_callbacks_over_http_install_the_profile(self, esim_server: LiveServer, smdp: Smdp) -> None:
        """The phone installs the profile with the confirmation code it was sent; the SM-DP+'s callbacks
        reach simkeep over HTTP with its bearer token; the profile ends installed, its activation queued."""
        _holder, reference, _iccid = _released_order(esim_server, smdp)
        profile = _profile(esim_server, reference)
        assert profile.state == EsimProfileState.RELEASED
        played = smdp.download(profile.matching_id or "", _confirmation_code(esim_server))
        assert [d["http_status"] for d in played["deliveries"]] == [200, 200, 200]
        assert {d["body"]["header"]["functionExecutionStatus"]["status"] for d in played["deliveries"]} == {
            "Executed-Success"
        }
        profile = _profile(esim_server, reference)
        assert (profile.state, profile.eid) == (EsimProfileState.INSTALLED, played["events"][-1]["eid"])
        with esim_server.session() as db:
            queued = db.scalar(select(Job).where(Job.kind == service.ACTIVATE_JOB))
            assert queued is not None

    def test_number_moves_to_the_esim(self, esim_server: LiveServer, smdp: Smdp) -> None:
        """Once installed, the worker activates the order and the HLR serves the number on the eSIM's IMSI,
        the old SIM barred."""
        holder, reference, iccid = _released_order(esim_server, smdp)
        profile = _profile(esim_server, reference)
        smdp.download(profile.matching_id or "", _confirmation_code(esim_server))
        assert _profile(esim_server, reference).state == EsimProfileState.INSTALLED
        _work(esim_server)
        with esim_server.session() as db:
            order = db.scalar(select(ReplacementOrder).where(ReplacementOrder.reference == reference))
            assert order is not None
            assert order.state == OrderState.ACTIVATED
            from simkeep.models import Sim

            new_sim = db.scalar(select(Sim).where(Sim.iccid == iccid))
            assert new_sim is not None
            hlr = network_for(db)
            on_esim = hlr.lookup(new_sim.imsi)
            assert on_esim is not None
            assert (on_esim.msisdn, on_esim.barred) == (holder.msisdn, False)
            old = hlr.lookup(holder.sim.imsi)
            assert old is None or (old.msisdn is None and old.barred)

    def test_holder_cancels_and_the_profile_is_released(self, esim_server: LiveServer, smdp: Smdp) -> None:
        """Cancelling the order cancels the profile at the SM-DP+ through the worker."""
        from simkeep.replacements import service as orders
        from tests.esim.conftest import holder_actor

        holder, reference, iccid = _released_order(esim_server, smdp)
        seed(
            esim_server,
            lambda db, _s: orders.cancel(
                db, actor=holder_actor(holder.line), reference=reference, reason="no"
            ),
        )
        _work(esim_server)
        assert _profile(esim_server, reference).state == EsimProfileState.CANCELLED
        assert smdp.profile(iccid)["state"] == "unavailable"


class TestPortal:
    """The holder's order page shows the activation code as a QR code and as text, with instructions."""

    def test_qr_and_text(self, esim_server: LiveServer, smdp: Smdp, page: Any) -> None:  # noqa: F811
        """The page shows the code, the QR (holder-only PNG and SVG) decodes to it, and the steps name the
        channel of the confirmation code."""
        holder, reference, _iccid = _released_order(esim_server, smdp)
        expected = service.activation_code(_profile(esim_server, reference))
        assert expected is not None
        assert expected.startswith("LPA:1$") and expected.endswith("$$1")
        portal_sign_in(page, esim_server, holder.msisdn)
        page.goto(f"{esim_server.url}/portal/orders/{reference}")
        assert page.get_by_test_id("esim-code").inner_text() == expected
        assert page.get_by_test_id("esim-qr").evaluate("img => img.complete && img.naturalWidth > 0")
        assert "确认码" in page.get_by_test_id("esim-steps").inner_text()
        assert "电子邮件" in page.get_by_test_id("esim-steps").inner_text()
        png = page.request.get(f"{esim_server.url}/portal/orders/{reference}/esim.png")
        assert (png.status, png.headers["content-type"], png.headers["cache-control"]) == (
            200,
            "image/png",
            "no-store",
        )
        decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.body())))
        assert [d.text for d in decoded] == [expected]
        svg = page.request.get(f"{esim_server.url}/portal/orders/{reference}/esim.svg")
        assert (svg.status, svg.headers["content-type"].split(";")[0]) == (200, "image/svg+xml")
        page.screenshot(path=str(esim_server.outbox.parent / "esim-order.png"))

    def test_english(self, esim_server: LiveServer, smdp: Smdp, page: Any) -> None:  # noqa: F811
        """After the language switch the instructions read in English."""
        holder, reference, _iccid = _released_order(esim_server, smdp)
        portal_sign_in(page, esim_server, holder.msisdn)
        page.goto(f"{esim_server.url}/portal/orders/{reference}")
        page.get_by_test_id("lang-switch").click()
        page.goto(f"{esim_server.url}/portal/orders/{reference}")
        assert "Add eSIM" in page.get_by_test_id("esim-steps").inner_text()
        assert page.get_by_role("heading", name="eSIM activation code").is_visible()

    def test_another_holder_gets_no_qr(self, esim_server: LiveServer, smdp: Smdp, page: Any) -> None:  # noqa: F811
        """Another holder asking for the QR image is answered "not found", as for a missing order."""
        _holder, reference, _iccid = _released_order(esim_server, smdp)
        other = seed(esim_server, lambda db, s: factories.holder(db, s, name="李四"))
        portal_sign_in(page, esim_server, other.msisdn)
        for kind in ("png", "svg"):
            r = page.request.get(f"{esim_server.url}/portal/orders/{reference}/esim.{kind}")
            assert r.status == 404
            assert r.headers["content-type"].startswith("text/html")

    def test_no_activation_form_when_the_smdp_decides(
        self,
        esim_server: LiveServer,
        smdp: Smdp,
        page: Any,  # noqa: F811
    ) -> None:
        """With activation on installation, the page offers no activation form for the eSIM."""
        holder, reference, _iccid = _released_order(esim_server, smdp)
        portal_sign_in(page, esim_server, holder.msisdn)
        page.goto(f"{esim_server.url}/portal/orders/{reference}")
        assert page.get_by_test_id("esim-code").is_visible()
        assert page.get_by_test_id("activate").count() == 0

    def test_holder_confirms_in_holder_mode(
        self,
        holder_mode_server: LiveServer,
        smdp: Smdp,
        page: Any,  # noqa: F811
    ) -> None:
        """With activation on the holder's confirmation, the holder activates the released eSIM with its
        ICCID digits on the portal, and the HLR serves the number on the eSIM."""
        server = holder_mode_server
        holder, reference, iccid = _released_order(server, smdp)
        portal_sign_in(page, server, holder.msisdn)
        page.goto(f"{server.url}/portal/orders/{reference}")
        assert "ICCID" in page.get_by_test_id("esim-steps").inner_text()
        page.get_by_label("ICCID 最后 6 位").fill(iccid[-6:])
        page.get_by_test_id("activate").click()
        assert page.get_by_test_id("order-state").inner_text() == "已激活"
        _work(server)
        with server.session() as db:
            from simkeep.models import Sim

            new_sim = db.scalar(select(Sim).where(Sim.iccid == iccid))
            assert new_sim is not None
            on_esim = network_for(db).lookup(new_sim.imsi)
            assert on_esim is not None
            assert on_esim.msisdn == holder.msisdn
