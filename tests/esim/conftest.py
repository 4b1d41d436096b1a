"""Fixtures of the eSIM tests: the ES2+ test double of an SM-DP+ on loopback, and eSIM orders.

The double runs once per test session in uvicorn on a free loopback port and is reset before each test.
``settings`` points simkeep at it, with a callback token, so that every eSIM test talks ES2+ over HTTP.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.esim.smdp_double import DoubleState, create_smdp_double
from simkeep.identity.application import CheckOutcome, OnlineApplication
from simkeep.identity.evidence import store_upload
from simkeep.identity.otp import issue_code
from simkeep.identity.service import Evidence
from simkeep.jobs.worker import drain
from simkeep.models import Channel, Line, OrderState, PaymentMethod, ReplacementOrder, Subscriber
from simkeep.replacements import service as orders
from tests import factories
from tests.conftest import TEST_SECRET

CALLBACK_TOKEN = "cb-token-0123456789abcdef0123456789abcdef"
REQUESTER = "simkeep-test-operator"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """Run ``app`` in uvicorn on loopback in a thread; returns once it accepts connections."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            pytest.fail("a test server did not start")
        time.sleep(0.02)
    return server, thread


@dataclass
class Smdp:
    """The running test double and its test-control interface."""

    url: str
    state: DoubleState
    control: httpx.Client

    def load(self, *iccids: str, profile_type: str = "simkeep-test") -> None:
        """Make these ICCIDs available profiles."""
        r = self.control.post(
            "/test-control/profiles", json={"iccids": list(iccids), "profileType": profile_type}
        )
        assert r.status_code == 200, r.text

    def profile(self, iccid: str) -> dict[str, Any]:
        """The double's view of a profile."""
        r = self.control.get(f"/test-control/profiles/{iccid}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def fault(self, function: str, **fault: object) -> None:
        """Make the next call(s) of ``function`` fail as described."""
        r = self.control.post("/test-control/faults", json={"function": function, **fault})
        assert r.status_code == 200, r.text

    def calls(self) -> list[dict[str, Any]]:
        """Every ES2+ call the double received since the reset."""
        data: list[dict[str, Any]] = self.control.get("/test-control/calls").json()
        return data

    def download(self, matching_id: str, code: str, **options: object) -> dict[str, Any]:
        """A device downloads and installs the profile; returns the events and the operator's answers."""
        r = self.control.post(
            "/test-control/download", json={"matchingId": matching_id, "confirmationCode": code, **options}
        )
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


@pytest.fixture(scope="session")
def smdp_server() -> Iterator[tuple[str, DoubleState]]:
    """The ES2+ test double, for the whole session."""
    port = free_port()
    app = create_smdp_double(
        requesters=(REQUESTER,), address=f"127.0.0.1:{port}", callback_token=CALLBACK_TOKEN
    )
    server, thread = serve(app, port)
    try:
        yield f"http://127.0.0.1:{port}", app.state.double
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def smdp(smdp_server: tuple[str, DoubleState]) -> Iterator[Smdp]:
    """The test double, reset for this test (no profiles, no faults, no callback target)."""
    url, state = smdp_server
    with httpx.Client(base_url=url, timeout=30) as control:
        control.post("/test-control/reset")
        state.callback_url = ""
        yield Smdp(url, state, control)


def esim_settings(database_url: str, outbox: Path, smdp_url: str, **extra: Any) -> Settings:
    """Test settings with the eSIM channel pointed at the double."""
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": TEST_SECRET,
        "database_url": database_url,
        "otp_transport": "file",
        "otp_outbox_dir": str(outbox),
        "esim_smdp_url": smdp_url,
        "esim_requester_id": REQUESTER,
        "esim_callback_token": CALLBACK_TOKEN,
        "esim_timeout_s": 2.0,
        # The CAMARA recorder's background tick would use the test's shared session from another thread:
        # these tests make no CAMARA queries, so it never ticks during one.
        "camara_query_flush_seconds": 3600.0,
    }
    return Settings(**(values | extra))


@pytest.fixture
def settings(migrated: tuple[str, Engine], outbox: Path, smdp: Smdp) -> Settings:
    """Test settings with the eSIM channel configured (overrides the suite's settings)."""
    return esim_settings(migrated[0], outbox, smdp.url)


def holder_actor(line: Line) -> Actor:
    """The holder signed in to ``line`` with the service password and a one-time code."""
    return Actor(
        kind="line",
        label=f"line:{line.id}",
        line_id=line.id,
        proof_methods=("service_password", "one_time_code"),
    )


def paid_esim_order(
    db: Session, settings: Settings, holder: factories.Holder, *, pay: bool = True
) -> ReplacementOrder:
    """An online eSIM order approved by the automatic checks (given as passed) and paid: its SIM assigned."""
    line, subscriber = holder.line, holder.subscriber
    actor = holder_actor(line)
    refs = [
        store_upload(db, settings, actor=actor, kind=kind, data=_jpeg(), declared_type="image/jpeg").reference
        for kind in ("document_photo", "selfie")
    ]
    _, code = issue_code(
        db, settings, line=line, subscriber=subscriber, purpose="replacement.submit", channel="email"
    )
    order = orders.submit(
        db,
        settings,
        actor=actor,
        msisdn=line.msisdn,
        channel=Channel.ESIM,
        evidence=Evidence(),
        application=OnlineApplication(factories.DOCUMENT, refs[0], refs[1], code),
        checks=[CheckOutcome(kind, "pass") for kind in ("document", "ocr", "face")],
    )
    assert order.state == OrderState.AWAITING_PAYMENT, order.state
    if pay:
        orders.pay(
            db, actor=actor, reference=order.reference, method=PaymentMethod.ONLINE, payment_reference="PAY-1"
        )
    return order


def _jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 180, 160)).save(out, format="JPEG")
    return out.getvalue()


def run_jobs(db: Session, settings: Settings) -> int:
    """Run every due job in the test's transaction, as the worker would."""
    return drain(db, settings)


def subscriber_of(db: Session, order: ReplacementOrder) -> Subscriber:
    """The order's holder."""
    found = db.scalar(select(Subscriber).where(Subscriber.id == order.subscriber_id))
    assert found is not None
    return found
