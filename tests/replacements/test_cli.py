"""``simkeep orders``: replacement orders and fees from the command line, against a real database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from simkeep.auth.actors import Actor
from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.db.base import utcnow
from simkeep.db.engine import make_session_factory
from simkeep.identity.service import Evidence
from simkeep.models import (
    AuditEntry,
    Channel,
    Fee,
    PaymentMethod,
    ReplacementOrder,
    Sim,
    SimStatus,
    StaffRole,
)
from simkeep.replacements import service
from tests import factories
from tests.helpers import snapshot


@dataclass
class Cli:
    """The ``simkeep`` command wired to a private, migrated database."""

    runner: CliRunner
    settings: Settings
    sessions: Callable[[], Session]

    def run(self, *args: str) -> Result:
        """Run ``simkeep ARGS``."""
        return self.runner.invoke(app, list(args))

    def json(self, *args: str) -> Any:
        """Run a command with --json and parse what it printed."""
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def state(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every table, the audit log included."""
        with self.sessions() as session:
            return snapshot(session, exclude=())

    def last_audit(self) -> AuditEntry:
        """The newest audit entry."""
        with self.sessions() as session:
            return session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()


@pytest.fixture
def cli(fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The CLI, configured through the environment to use the test's private database."""
    engine, settings = fresh
    monkeypatch.setenv("SIMKEEP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SIMKEEP_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "test")
    get_settings.cache_clear()
    try:
        yield Cli(CliRunner(), settings, make_session_factory(engine))
    finally:
        get_settings.cache_clear()


@dataclass
class Orders:
    """Two store orders: one awaiting payment, one paid with its SIM assigned."""

    waiting: str
    assigned: str
    assigned_sim_id: int
    msisdn: str


@pytest.fixture
def orders(cli: Cli) -> Orders:
    """Orders made through the service, as a clerk at a counter would, and committed."""
    with cli.sessions() as session:
        store = factories.store(session, "BJ-XIDAN")
        user = factories.staff(session, StaffRole.CLERK, store_row=store)
        clerk = Actor(
            kind="staff",
            label=f"staff:{user.username}",
            staff_user_id=user.id,
            role=user.role,
            store_id=store.id,
        )
        sim = factories.sim(session, store=store)
        first, second = factories.holder(session, cli.settings), factories.holder(session, cli.settings)
        evidence = Evidence(in_person_document_number=factories.DOCUMENT)
        waiting = service.submit(
            session, cli.settings, actor=clerk, msisdn=first.msisdn, channel=Channel.STORE, evidence=evidence
        )
        assigned = service.submit(
            session, cli.settings, actor=clerk, msisdn=second.msisdn, channel=Channel.STORE, evidence=evidence
        )
        service.pay(
            session,
            actor=clerk,
            reference=assigned.reference,
            method=PaymentMethod.CASH,
            payment_reference=None,
        )
        service.assign_sim(session, actor=clerk, reference=assigned.reference, iccid=sim.iccid)
        session.commit()
        return Orders(waiting.reference, assigned.reference, sim.id, first.msisdn)


class TestOrdersExpire:
    """``orders expire`` closes orders past their activation deadline and audits the run."""

    def test_expires_overdue_orders(self, cli: Cli, orders: Orders) -> None:
        """An overdue order is expired, its SIM goes back to stock, and the run is audited as the CLI."""
        with cli.sessions() as session:
            order = session.scalars(select(ReplacementOrder).filter_by(reference=orders.assigned)).one()
            order.expires_at = utcnow() - timedelta(days=1)
            session.commit()
        assert cli.json("orders", "expire") == {"expired": [orders.assigned]}
        with cli.sessions() as session:
            states = dict(session.execute(select(ReplacementOrder.reference, ReplacementOrder.state)).all())
            sim = session.get(Sim, orders.assigned_sim_id)
        assert states == {orders.assigned: "expired", orders.waiting: "awaiting_payment"}
        assert sim is not None
        assert sim.status == SimStatus.IN_STOCK
        entry = cli.last_audit()
        assert (entry.actor, entry.action, entry.data) == ("cli", "replacement.expiry_run", {"expired": 1})

    def test_nothing_overdue(self, cli: Cli, orders: Orders) -> None:
        """With nothing overdue no order changes; the text output says none expired."""
        result = cli.run("orders", "expire")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("expired 0 order(s)")
        assert cli.last_audit().action == "replacement.expiry_run"


class TestOrdersList:
    """``orders list`` shows the queue, optionally by state."""

    def test_lists_every_order_oldest_first(self, cli: Cli, orders: Orders) -> None:
        """Both orders come back, oldest first, with their states."""
        out = cli.json("orders", "list")
        assert [(o["reference"], o["state"]) for o in out] == [
            (orders.waiting, "awaiting_payment"),
            (orders.assigned, "sim_assigned"),
        ]

    def test_filters_by_state(self, cli: Cli, orders: Orders) -> None:
        """--state keeps the orders in that state only."""
        assert [o["reference"] for o in cli.json("orders", "list", "--state", "sim_assigned")] == [
            orders.assigned
        ]

    def test_text_output_masks_numbers(self, cli: Cli, orders: Orders) -> None:
        """A person reading the list sees masked numbers."""
        result = cli.run("orders", "list")
        assert orders.waiting in result.stdout
        assert orders.msisdn not in result.stdout
        assert orders.msisdn[-4:] in result.stdout

    def test_unknown_state_is_refused(self, cli: Cli, orders: Orders) -> None:
        """A state that does not exist fails with STATE_INVALID, naming the valid ones."""
        result = cli.run("orders", "list", "--state", "lost", "--json")
        assert result.exit_code == 1
        error = json.loads(result.stdout)
        assert error["error"] == "STATE_INVALID"
        assert "in_review" in error["message"]


class TestOrdersShow:
    """``orders show`` prints one order with its timeline."""

    def test_shows_order_and_timeline(self, cli: Cli, orders: Orders) -> None:
        """The order's fields, next steps and every transition are shown."""
        out = cli.json("orders", "show", orders.assigned)
        assert (out["reference"], out["state"], out["channel"]) == (orders.assigned, "sim_assigned", "store")
        assert out["assurance"] == "in_person"
        assert "activate" in out["next_steps"]
        assert [e["to_state"] for e in out["timeline"]] == [
            "submitted",
            "verifying",
            "approved",
            "awaiting_payment",
            "paid",
            "sim_assigned",
        ]

    def test_text_output(self, cli: Cli, orders: Orders) -> None:
        """The text view names the state and lists the timeline."""
        result = cli.run("orders", "show", orders.waiting.lower())
        assert result.exit_code == 0, result.output
        assert "awaiting_payment" in result.stdout
        assert "request_payment" in result.stdout

    def test_unknown_reference_is_refused(self, cli: Cli, orders: Orders) -> None:
        """An unknown reference fails with ORDER_NOT_FOUND."""
        result = cli.run("orders", "show", "RO-NOTHERE")
        assert result.exit_code == 1
        assert "ORDER_NOT_FOUND" in result.stderr


class TestOrdersFees:
    """``orders fees`` shows the schedule, defaults included."""

    def test_default_schedule(self, cli: Cli) -> None:
        """With nothing set every channel costs 10.00 CNY."""
        out = cli.json("orders", "fees")
        assert [(f["channel"], f["sim_kind"], f["amount_minor"], f["currency"]) for f in out] == [
            ("store", "physical", 1000, "CNY"),
            ("online_mail", "physical", 1000, "CNY"),
            ("esim", "esim", 1000, "CNY"),
        ]


class TestOrdersSetFee:
    """``orders set-fee`` changes one channel's fee, audited, and refuses bad input."""

    def test_sets_and_audits_a_fee(self, cli: Cli) -> None:
        """The new fee is in the schedule and the change is audited as the CLI."""
        out = cli.json("orders", "set-fee", "esim", "1500")
        assert (out["channel"], out["amount_minor"], out["display"]) == ("esim", 1500, "15.00 CNY")
        fees = {f["channel"]: f["amount_minor"] for f in cli.json("orders", "fees")}
        assert fees == {"store": 1000, "online_mail": 1000, "esim": 1500}
        entry = cli.last_audit()
        assert (entry.actor, entry.action, entry.subject_id) == ("cli", "fee.set", "esim")
        assert entry.data == {"amount_minor": 1500, "currency": "CNY"}

    def test_currency_option(self, cli: Cli) -> None:
        """--currency sets the currency, upper-cased."""
        out = cli.json("orders", "set-fee", "store", "800", "--currency", "hkd")
        assert (out["currency"], out["display"]) == ("HKD", "8.00 HKD")

    def test_changing_a_fee_twice_keeps_one_entry(self, cli: Cli) -> None:
        """Setting a channel's fee again updates its entry."""
        cli.json("orders", "set-fee", "store", "800")
        cli.json("orders", "set-fee", "store", "0")
        with cli.sessions() as session:
            assert [(f.channel, f.amount_minor) for f in session.scalars(select(Fee))] == [("store", 0)]

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            (("fax", "1000"), "CHANNEL_INVALID"),
            (("esim", "1000001"), "FEE_INVALID"),
            (("esim", "1000", "--currency", "YUAN"), "FEE_INVALID"),
            (("esim", "1000", "--currency", "C1Y"), "FEE_INVALID"),
        ],
    )
    def test_bad_input_is_refused(self, cli: Cli, args: tuple[str, ...], error: str) -> None:
        """A bad channel, amount or currency fails with its code and changes nothing."""
        before = cli.state()
        result = cli.run("orders", "set-fee", *args)
        assert result.exit_code == 1
        assert f"error [{error}]" in result.stderr
        assert cli.state() == before

    def test_amount_must_be_a_number(self, cli: Cli) -> None:
        """A non-numeric amount is a usage error; nothing changes."""
        before = cli.state()
        assert cli.run("orders", "set-fee", "esim", "ten").exit_code == 2
        assert cli.state() == before
