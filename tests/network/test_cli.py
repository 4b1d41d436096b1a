"""``simkeep network reconcile`` through typer's CliRunner, on a committed database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.models import AuditEntry
from simkeep.network.adapter import EmbeddedHlr
from tests import factories
from tests.network.osmo import OsmoHlrHandle


@pytest.fixture
def cli_env(
    fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Result]]:
    """Runs the CLI against the private database of ``fresh``; extra env as keyword arguments."""
    settings = fresh[1]
    monkeypatch.setenv("SIMKEEP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SIMKEEP_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "test")
    monkeypatch.setenv("SIMKEEP_LOG_LEVEL", "WARNING")

    def run(*args: str, **env: str) -> Result:
        for name, value in env.items():
            monkeypatch.setenv(f"SIMKEEP_{name.upper()}", value)
        get_settings.cache_clear()
        return CliRunner().invoke(app, ["network", "reconcile", *args])

    yield run
    get_settings.cache_clear()


@pytest.fixture
def holder(fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]) -> factories.Holder:
    """An active line whose SIM is in the embedded HLR, committed."""
    with fresh_session_factory() as session:
        made = factories.holder(session, fresh[1])
        session.commit()
    return made


def audits(session_factory: Callable[[], Session]) -> int:
    with session_factory() as session:
        query = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "network.reconciled")
        return int(session.scalar(query) or 0)


class TestReconcileCommandEmbedded:
    def test_agreement_exits_zero(self, cli_env: Callable[..., Result], holder: factories.Holder) -> None:
        """With simkeep and the embedded HLR in agreement the command says so and exits 0."""
        result = cli_env()
        assert result.exit_code == 0, result.output
        assert "agree" in result.output

    def test_difference_exits_one_masked(
        self,
        cli_env: Callable[..., Result],
        holder: factories.Holder,
        fresh_session_factory: Callable[[], Session],
    ) -> None:
        """A barred active line is printed with its number masked; exit 1; nothing changes."""
        with fresh_session_factory() as session:
            EmbeddedHlr(session).set_barred(holder.sim.imsi, barred=True)
            session.commit()
        result = cli_env()
        assert result.exit_code == 1
        assert "should be live" in result.output
        assert holder.msisdn not in result.output
        with fresh_session_factory() as session:
            entry = EmbeddedHlr(session).lookup(holder.sim.imsi)
        assert entry is not None
        assert entry.barred
        assert audits(fresh_session_factory) == 0

    def test_fix_json(
        self,
        cli_env: Callable[..., Result],
        holder: factories.Holder,
        fresh_session_factory: Callable[[], Session],
    ) -> None:
        """--fix --json repairs, audits and reports nothing remaining; exit 0."""
        with fresh_session_factory() as session:
            EmbeddedHlr(session).unbind_number(holder.sim.imsi)
            session.commit()
        result = cli_env("--fix", "--json")
        assert result.exit_code == 0, result.output
        body = json.loads(result.output)
        assert [d["kind"] for d in body["differences"]] == ["number_missing"]
        assert body["remaining"] == []
        assert holder.msisdn not in result.output
        assert audits(fresh_session_factory) == 1
        with fresh_session_factory() as session:
            entry = EmbeddedHlr(session).lookup(holder.sim.imsi)
        assert entry is not None
        assert entry.msisdn == holder.msisdn


class TestReconcileCommandOsmoHlr:
    def test_fix_against_osmo_hlr(
        self,
        cli_env: Callable[..., Result],
        holder: factories.Holder,
        hlr_handle: OsmoHlrHandle,
        fresh_session_factory: Callable[[], Session],
    ) -> None:
        """Configured for osmo-hlr, the command finds the SIM missing there, creates it and exits 0."""
        env = {
            "network_adapter": "osmo-hlr",
            "hlr_host": hlr_handle.host,
            "hlr_ctrl_port": str(hlr_handle.ctrl_port),
            "hlr_vty_port": str(hlr_handle.vty_port),
        }
        first = cli_env(**env)
        assert first.exit_code == 1
        assert "missing from the HLR" in first.output
        fixed = cli_env("--fix", **env)
        assert fixed.exit_code == 0, fixed.output
        assert "repaired" in fixed.output
        with hlr_handle.adapter() as hlr:
            entry = hlr.lookup(holder.sim.imsi)
        assert entry is not None
        assert (entry.msisdn, entry.live) == (holder.msisdn, True)
        assert audits(fresh_session_factory) == 3  # provision, bind, unbar
        assert cli_env(**env).exit_code == 0

    def test_hlr_down_exits_two(
        self, cli_env: Callable[..., Result], holder: factories.Holder, hlr_handle: OsmoHlrHandle
    ) -> None:
        """With osmo-hlr unreachable the command fails with NETWORK_UNAVAILABLE and exit 2."""
        hlr_handle.kill()
        try:
            result = cli_env(
                "--json",
                network_adapter="osmo-hlr",
                hlr_host=hlr_handle.host,
                hlr_ctrl_port=str(hlr_handle.ctrl_port),
                hlr_vty_port=str(hlr_handle.vty_port),
                hlr_timeout_s="0.5",
            )
        finally:
            hlr_handle.restart()
        assert result.exit_code == 2
        assert json.loads(result.output)["error"] == "NETWORK_UNAVAILABLE"
