"""``simkeep demo``: the documented demo dataset, loaded idempotently through the real use cases."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from stdnum.cn import ric
from typer.testing import CliRunner

from simkeep.auth import service as auth_service
from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.db.engine import make_session_factory
from simkeep.demo import people
from simkeep.identifiers import iccid_problem, imsi_problem, normalise_msisdn
from simkeep.models import (
    DocumentType,
    Line,
    LossReport,
    Payment,
    ReplacementOrder,
    Sim,
    SimChange,
    SimStatus,
    StaffRole,
    StaffUser,
    Store,
)
from simkeep.security import hash_password
from tests.helpers import snapshot

DOCS = Path(__file__).resolve().parents[2] / "docs" / "demo.md"


@dataclass
class Cli:
    """The ``simkeep`` command wired to a private, migrated database."""

    runner: CliRunner
    settings: Settings
    sessions: Callable[[], Session]

    def run(self, *args: str) -> Result:
        """Run ``simkeep ARGS``."""
        return self.runner.invoke(app, list(args))

    def demo(self) -> dict[str, Any]:
        """Run ``simkeep demo --json`` and parse its summary."""
        result = self.run("demo", "--json")
        assert result.exit_code == 0, result.output
        out: dict[str, Any] = json.loads(result.stdout)
        return out

    def state(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every table, the audit log included."""
        with self.sessions() as session:
            return snapshot(session, exclude=())


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


def _newest_order(session: Session, msisdn: str) -> ReplacementOrder | None:
    line = session.scalars(select(Line).filter_by(msisdn=msisdn)).one()
    return session.scalar(
        select(ReplacementOrder).filter_by(line_id=line.id).order_by(ReplacementOrder.id.desc()).limit(1)
    )


def _holder(scenario: people.Scenario) -> people.HolderSpec:
    return next(h for h in people.HOLDERS if h.scenario == scenario)


class TestDemoPeople:
    """The demo's people and identifiers are valid by the checks simkeep and its libraries apply."""

    def test_resident_ids_pass_stdnum(self) -> None:
        """Every resident ID number has a known region, a real birth date and a valid MOD 11-2 check."""
        ids = [h.document_number for h in people.HOLDERS if h.document_type == DocumentType.CN_RIC]
        assert len(ids) >= 6
        assert all(ric.validate(n) == n for n in ids)

    def test_resident_id_check_character(self) -> None:
        """The check character is computed, X standing for 10 (GB 11643 example number)."""
        assert people.resident_id("110105", "19491231", 2) == "11010519491231002X"

    def test_numbers_are_valid_and_distinct(self) -> None:
        """Every line number is a valid E.164 number, none twice, none used as a delivery phone."""
        numbers = [h.msisdn for h in people.HOLDERS]
        assert [normalise_msisdn(n) for n in numbers] == numbers
        assert len(set(numbers)) == len(numbers) == 12
        assert not {h.delivery_address["phone"] for h in people.HOLDERS} & set(numbers)

    def test_sim_serials_are_valid(self) -> None:
        """Demo ICCIDs pass the ICCID check and IMSIs have 15 digits."""
        serial = people.WAREHOUSE_SERIALS + 1
        assert iccid_problem(people.demo_iccid(serial)) is None
        assert len(people.demo_imsi(serial)) == 15
        assert imsi_problem(people.demo_imsi(serial)) is None

    def test_every_scenario_is_played(self) -> None:
        """Each scenario of the demo belongs to some holder."""
        assert {h.scenario for h in people.HOLDERS} == set(people.Scenario)


class TestDemoCommand:
    """``simkeep demo`` loads the dataset once and documents what it loaded."""

    def test_loads_the_documented_dataset(self, cli: Cli) -> None:
        """Stores, stock, staff and lines are there in the documented numbers."""
        out = cli.demo()
        assert out["already_loaded"] is False
        assert out["created"] == {
            "stores": 2,
            "sims": 132,
            "staff_users": 4,
            "lines": 12,
            "orders": 6,
            "loss_reports": 2,
        }
        with cli.sessions() as session:
            stores = {s.code: s.id for s in session.scalars(select(Store))}
            users = {u.username: (u.role, u.store_id) for u in session.scalars(select(StaffUser))}
            in_stock = dict(
                session.execute(
                    select(Sim.batch, func.count())
                    .where(Sim.status == SimStatus.IN_STOCK)
                    .group_by(Sim.batch)
                ).all()
            )
        assert set(stores) == {"BJ-XIDAN", "SH-NANJINGRD"}
        assert users == {
            "clerk.bj": (StaffRole.CLERK, stores["BJ-XIDAN"]),
            "clerk.sh": (StaffRole.CLERK, stores["SH-NANJINGRD"]),
            "reviewer": (StaffRole.REVIEWER, None),
            "admin": (StaffRole.ADMIN, None),
        }
        # One blank SIM used at BJ-XIDAN, one warehouse SIM shipped, one eSIM assigned; SH got its SIM back.
        assert in_stock == {
            "demo-store-BJ-XIDAN": 19,
            "demo-store-SH-NANJINGRD": 20,
            "demo-warehouse": 49,
            "demo-esim": 29,
        }

    def test_second_run_adds_nothing(self, cli: Cli) -> None:
        """Loading twice leaves every table exactly as the first load did."""
        cli.demo()
        before = cli.state()
        again = cli.demo()
        assert again["already_loaded"] is True
        assert set(again["created"].values()) == {0}
        assert cli.state() == before
        assert len(again["numbers"]) == 12

    def test_orders_are_in_the_documented_states(self, cli: Cli) -> None:
        """Each holder's newest order is in the state its scenario documents, and the summary says so."""
        out = cli.demo()
        summary = {n["msisdn"]: n["order_state"] for n in out["numbers"]}
        with cli.sessions() as session:
            for spec in people.HOLDERS:
                order = _newest_order(session, spec.msisdn)
                expected = people.SCENARIO_ORDER_STATE[spec.scenario]
                assert (order.state if order else None) == expected, spec.scenario
                assert summary[spec.msisdn] == expected

    def test_loss_report_suspends_its_line(self, cli: Cli) -> None:
        """The lost SIM's line is suspended with an open loss report and no order."""
        cli.demo()
        spec = _holder(people.Scenario.LOSS_REPORTED)
        with cli.sessions() as session:
            line = session.scalars(select(Line).filter_by(msisdn=spec.msisdn)).one()
            report = session.scalars(select(LossReport).filter_by(line_id=line.id)).one()
        assert (line.status, line.suspension_reason, report.status) == ("suspended", "lost", "open")

    def test_store_replacement_moved_the_number(self, cli: Cli) -> None:
        """The stolen SIM was replaced at the counter: new SIM live, old retired, loss report closed."""
        cli.demo()
        spec = _holder(people.Scenario.STORE_ACTIVATED)
        with cli.sessions() as session:
            line = session.scalars(select(Line).filter_by(msisdn=spec.msisdn)).one()
            changes = session.scalars(
                select(SimChange).filter_by(line_id=line.id).order_by(SimChange.id)
            ).all()
            report = session.scalars(select(LossReport).filter_by(line_id=line.id)).one()
            new_sim = session.get(Sim, line.sim_id)
            old_sim = session.get(Sim, changes[0].new_sim_id)
        assert [c.channel for c in changes] == ["initial", "store"]
        assert (line.status, report.status) == ("active", "closed_by_replacement")
        assert new_sim is not None and old_sim is not None
        assert (new_sim.status, new_sim.batch, old_sim.status) == ("active", "demo-store-BJ-XIDAN", "retired")

    def test_cancelled_order_was_refunded(self, cli: Cli) -> None:
        """The cancelled store order has a cash charge and its refund."""
        cli.demo()
        with cli.sessions() as session:
            order = _newest_order(session, _holder(people.Scenario.CANCELLED_REFUNDED).msisdn)
            assert order is not None
            payments = session.scalars(
                select(Payment).filter_by(order_id=order.id).order_by(Payment.id)
            ).all()
        assert [(p.kind, p.method, p.amount_minor) for p in payments] == [
            ("charge", "cash", 1000),
            ("refund", "cash", 1000),
        ]

    def test_demo_credentials_sign_in(self, cli: Cli) -> None:
        """Every demo staff user signs in with the demo password, and holders with 123456."""
        cli.demo()
        with cli.sessions() as session:
            for spec in people.STAFF:
                auth_service.sign_in_staff(
                    session, cli.settings, username=spec.username, password=people.DEMO_STAFF_PASSWORD
                )
            auth_service.sign_in_line(
                session,
                cli.settings,
                msisdn=people.HOLDERS[-1].msisdn,
                service_password=people.DEMO_SERVICE_PASSWORD,
            )

    def test_audit_chain_verifies(self, cli: Cli) -> None:
        """``simkeep audit verify`` passes after the demo."""
        cli.demo()
        result = cli.run("audit", "verify", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["ok"] is True

    def test_text_summary_warns_and_lists_numbers(self, cli: Cli) -> None:
        """The summary warns about the public credentials and lists the numbers with their states."""
        result = cli.run("demo")
        assert result.exit_code == 0, result.output
        assert "warning" in result.stderr
        assert people.DEMO_STAFF_PASSWORD in result.stdout
        assert "/docs" in result.stdout
        assert all(h.msisdn in result.stdout for h in people.HOLDERS)

    def test_keeps_existing_stores_and_users(self, cli: Cli) -> None:
        """A demo store created beforehand is kept as it was and still gets the demo's stock."""
        created = cli.runner.invoke(
            app, ["staff", "stores", "add", "BJ-XIDAN", "--name", "Xidan", "--region", "BJ"]
        )
        assert created.exit_code == 0, created.output
        out = cli.demo()
        assert out["created"]["stores"] == 1
        with cli.sessions() as session:
            store = session.scalars(select(Store).filter_by(code="BJ-XIDAN")).one()
            stock = session.scalar(select(func.count()).select_from(Sim).filter_by(store_id=store.id))
        assert (store.name, stock) == ("Xidan", 20)

    def test_conflicting_user_stops_the_load(self, cli: Cli) -> None:
        """A demo user name taken with another role stops the demo with DEMO_CONFLICT; nothing is loaded."""
        with cli.sessions() as session:
            session.add(
                StaffUser(
                    username="reviewer",
                    display_name="R",
                    role=StaffRole.CLERK,
                    store_id=None,
                    password_hash=hash_password("x" * 12),
                )
            )
            session.commit()
        before = cli.state()
        result = cli.run("demo", "--json")
        assert result.exit_code == 1
        assert json.loads(result.stdout)["error"] == "DEMO_CONFLICT"
        assert cli.state() == before

    def test_refused_in_production(self, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
        """With public passwords, the demo is never loaded into a production database."""
        monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "production")
        monkeypatch.setenv("SIMKEEP_VAULT_KEYS", "k1:" + base64.b64encode(bytes(range(32))).decode())
        get_settings.cache_clear()
        before = cli.state()
        result = cli.run("demo")
        assert result.exit_code == 1
        assert "DEMO_REFUSED_IN_PRODUCTION" in result.stderr
        assert cli.state() == before


class TestDemoDocs:
    """``docs/demo.md`` describes the dataset the code loads."""

    def test_docs_name_every_number_and_credential(self) -> None:
        """Every demo number, user name and password appears in the documentation."""
        text = DOCS.read_text(encoding="utf-8")
        assert all(h.msisdn in text for h in people.HOLDERS)
        assert all(s.username in text for s in people.STAFF)
        assert people.DEMO_STAFF_PASSWORD in text
        assert people.DEMO_SERVICE_PASSWORD in text
        assert all(h.document_number in text for h in people.HOLDERS)

    def test_documented_sims_are_the_ones_used(self, cli: Cli) -> None:
        """The SIMs the walk-through names are those the demo's orders got, and the next ones in stock."""
        cli.demo()
        text = DOCS.read_text(encoding="utf-8")
        with cli.sessions() as session:
            used = {}
            for scenario in (
                people.Scenario.SHIPPED,
                people.Scenario.ESIM_SIM_ASSIGNED,
                people.Scenario.STORE_ACTIVATED,
            ):
                order = _newest_order(session, _holder(scenario).msisdn)
                assert order is not None
                sim = session.get(Sim, order.new_sim_id)
                assert sim is not None
                used[scenario] = sim.iccid
        bj = people.STORE_SERIALS["BJ-XIDAN"]
        assert used == {
            people.Scenario.SHIPPED: people.demo_iccid(people.WAREHOUSE_SERIALS + 1),
            people.Scenario.ESIM_SIM_ASSIGNED: people.demo_iccid(people.ESIM_SERIALS + 1),
            people.Scenario.STORE_ACTIVATED: people.demo_iccid(bj + 1),
        }
        nexts = [people.demo_iccid(people.WAREHOUSE_SERIALS + 2), people.demo_iccid(bj + 2)]
        assert all(iccid in text for iccid in [*used.values(), *nexts])
        assert '"iccid_last_digits": "' + nexts[0][-6:] + '"' in text
