"""Fixtures and checks shared by the SIM-swap fraud suite.

The suite reuses the replacement tests' world (a store with stock and staff, a holder signed in through the
API) and adds a victim: a second holder whose line and orders the attacker goes after. What every refused
attack must leave behind is checked with the same few helpers: no order approved, the line on its old SIM,
no SIM change recorded, and (where simkeep records refusals) a failed proof or an audit entry.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from simkeep.auth.actors import Actor
from simkeep.config import Settings
from simkeep.identity.application import CheckOutcome, OnlineApplication
from simkeep.identity.evidence import store_upload
from simkeep.identity.otp import issue_code
from simkeep.identity.service import Evidence
from simkeep.models import AuditEntry, Channel, OrderState, ReplacementOrder, SimChange, SimStatus
from simkeep.replacements import service as orders
from simkeep.security import keyed_hash
from simkeep.web.security import CSRF_COOKIE, SESSION_COOKIE
from tests import factories
from tests.helpers import line_headers, snapshot
from tests.replacements import conftest as replacement_fixtures
from tests.replacements.conftest import World

#: A valid resident ID number that is not the test holder's (region 440304, born 1990-01-01).
VICTIM_DOCUMENT = "44030419900101002X"
#: A well-formed Chinese mobile number that no test line has.
UNKNOWN_MSISDN = "+8613999999999"
#: States an order reaches only once approved.
APPROVED_STATES = {
    OrderState.APPROVED,
    OrderState.AWAITING_PAYMENT,
    OrderState.PAID,
    OrderState.SIM_ASSIGNED,
    OrderState.SHIPPED,
    OrderState.DELIVERED,
    OrderState.ACTIVATING,
    OrderState.ACTIVATED,
}


world = replacement_fixtures.world  # the replacement tests' fixture, shared

#: Tables that change whatever a request does: sign-in tokens, and the CAMARA runtime's worker heartbeat
#: (written once when the app starts).
ALWAYS_EXCLUDED = ("auth_tokens", "camara_workers")


def rows(db: Session, *also: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table but :data:`ALWAYS_EXCLUDED` and ``also`` (see ``tests.helpers.snapshot``)."""
    return snapshot(db, exclude=(*ALWAYS_EXCLUDED, *also))


def assert_line_untouched(db: Session, holder: factories.Holder) -> None:
    """The line still on its first SIM, that SIM working, and no SIM change beyond the initial one."""
    db.expire_all()
    line, sim = holder.line, holder.sim
    assert line.sim_id == sim.id
    assert sim.status == SimStatus.ACTIVE
    changes = db.scalars(select(SimChange).where(SimChange.line_id == line.id)).all()
    assert [(c.old_sim_id, c.new_sim_id) for c in changes] == [(None, sim.id)]


def approved_orders(db: Session, holder: factories.Holder) -> list[str]:
    """References of the line's orders that were ever approved (in an approved state now)."""
    db.expire_all()
    return list(
        db.scalars(
            select(ReplacementOrder.reference).where(
                ReplacementOrder.line_id == holder.line.id, ReplacementOrder.state.in_(APPROVED_STATES)
            )
        )
    )


def last_audit_id(db: Session) -> int:
    """The id of the newest audit entry (0 when there is none)."""
    db.expire_all()
    return int(db.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1)) or 0)


def csrf_pair(settings: Settings, seed: str = "attacker-browser-seed") -> tuple[str, str]:
    """A CSRF cookie seed and the token that a form of that browser carries."""
    return seed, keyed_hash(settings.secret_key, seed, purpose="csrf")


def browser(client: TestClient, settings: Settings, *, session_token: str | None = None) -> str:
    """Give the test client a browser's cookies (a CSRF seed, and a session when given); the form token."""
    client.cookies.clear()
    seed, token = csrf_pair(settings, "browser-seed-of-the-test")
    client.cookies.set(CSRF_COOKIE, seed)
    if session_token is not None:
        client.cookies.set(SESSION_COOKIE, session_token)
    return token


def bearer_of(headers: dict[str, str]) -> str:
    """The raw token of API ``Authorization`` headers (the portal and console use it as the cookie)."""
    return headers["Authorization"].removeprefix("Bearer ")


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent on ``engine`` inside the block, without the test fixture's savepoints."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def small_jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 180, 160)).save(out, format="JPEG")
    return out.getvalue()


def approved_order(
    db: Session,
    settings: Settings,
    holder: factories.Holder,
    *,
    document: str = factories.DOCUMENT,
    channel: Channel = Channel.ONLINE_MAIL,
) -> str:
    """An online order of ``holder``, approved and awaiting payment, made through the service with the
    automatic checks given as passed (their own tests run the real ones); returns its reference."""
    actor = Actor(
        kind="line",
        label=f"line:{holder.line.id}",
        line_id=holder.line.id,
        proof_methods=("service_password", "one_time_code"),
    )
    refs = [
        store_upload(
            db, settings, actor=actor, kind=kind, data=small_jpeg(), declared_type="image/jpeg"
        ).reference
        for kind in ("document_photo", "selfie")
    ]
    _, code = issue_code(
        db,
        settings,
        line=holder.line,
        subscriber=holder.subscriber,
        purpose="replacement.submit",
        channel="email",
    )
    order = orders.submit(
        db,
        settings,
        actor=actor,
        msisdn=holder.msisdn,
        channel=channel,
        evidence=Evidence(),
        application=OnlineApplication(document, refs[0], refs[1], code),
        checks=[CheckOutcome(kind, "pass") for kind in ("document", "ocr", "face")],
    )
    assert order.state == OrderState.AWAITING_PAYMENT, order.state
    return order.reference


def store_order(world: World, *, assigned: bool) -> str:
    """A store order of the world's holder taken by the world's clerk (paid in cash and given a SIM of the
    store's stock when ``assigned``); its reference."""
    client = world.client
    r = client.post(
        "/api/v1/replacements",
        headers=world.clerk,
        json={
            "msisdn": world.holder.msisdn,
            "channel": "store",
            "in_person_document_number": factories.DOCUMENT,
        },
    )
    assert r.status_code == 201, r.text
    reference = str(r.json()["reference"])
    if assigned:
        paid = client.post(
            f"/api/v1/replacements/{reference}/payment", json={"method": "cash"}, headers=world.clerk
        )
        assert paid.status_code == 200, paid.text
        sim = client.post(
            f"/api/v1/replacements/{reference}/sim",
            json={"iccid": world.store_sims[0].iccid},
            headers=world.clerk,
        )
        assert sim.json()["state"] == "sim_assigned", sim.text
    return reference


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared test settings with the CAMARA writer thread's tick an hour apart: the thread writes its
    heartbeat through the app's session scope, which in these tests is the test's own session, and a tick
    in the middle of a request would break that session's transaction under the test."""
    return settings.model_copy(update={"camara_query_flush_seconds": 3600.0})


@pytest.fixture
def victim(world: World, db: Session, settings: Settings) -> factories.Holder:
    """A second holder, the target of the attacker (who is the world's holder)."""
    return factories.holder(db, settings, name="李娜", document=VICTIM_DOCUMENT)


@pytest.fixture
def victim_order(world: World, db: Session, settings: Settings, victim: factories.Holder) -> str:
    """The victim's online order, approved and shipped with a warehouse SIM; its reference."""
    reference = approved_order(db, settings, victim, document=VICTIM_DOCUMENT)
    client = world.client
    owner = line_headers(client, victim.msisdn)
    paid = client.post(
        f"/api/v1/replacements/{reference}/payment",
        json={"method": "online", "payment_reference": f"PAY-{reference}"},
        headers=owner,
    )
    assert paid.status_code == 200, paid.text
    shipped = client.post(f"/api/v1/replacements/{reference}/shipment", json={}, headers=world.admin)
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["state"] == "shipped", shipped.json()
    return reference
