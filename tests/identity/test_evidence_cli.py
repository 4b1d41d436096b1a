"""``simkeep evidence purge``: the purge run by operators from cron, against a real, committed database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.db.base import utcnow
from simkeep.db.engine import make_session_factory
from simkeep.models import AuditEntry, EvidenceFile, IdentityCheck, ReplacementOrder
from tests import factories
from tests.helpers import snapshot
from tests.identity.test_evidence_api import PASSING, REJECTED, apply_online, upload


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


@pytest.fixture
def cli(fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The CLI, configured through the environment to use the test's private database."""
    engine, settings = fresh
    monkeypatch.setenv("SIMKEEP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SIMKEEP_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "test")
    monkeypatch.setenv("SIMKEEP_OTP_TRANSPORT", "file")
    monkeypatch.setenv("SIMKEEP_OTP_OUTBOX_DIR", settings.otp_outbox_dir)
    get_settings.cache_clear()
    try:
        yield Cli(CliRunner(), settings, make_session_factory(engine))
    finally:
        get_settings.cache_clear()


@dataclass
class Vault:
    """Evidence in every situation the purge tells apart, committed."""

    old_closed: list[int]
    recent_closed: list[int]
    still_open: list[int]
    old_unused: int
    fresh_unused: int
    old_order_id: int


@pytest.fixture
def vault(cli: Cli) -> Vault:
    """A rejected order closed 40 days ago, one closed yesterday, an open one, and two unused uploads."""
    settings = cli.settings
    with cli.sessions() as session:
        holders = [factories.holder(session, settings) for _ in range(3)]
        old = apply_online(session, settings, holders[0], REJECTED, seed=0)
        recent = apply_online(session, settings, holders[1], REJECTED, seed=2)
        open_order = apply_online(session, settings, holders[2], PASSING, seed=4)
        old_unused = upload(session, settings, holders[0], "selfie", 6)
        fresh_unused = upload(session, settings, holders[1], "selfie", 7)
        session.execute(
            update(ReplacementOrder)
            .where(ReplacementOrder.id == old.id)
            .values(closed_at=utcnow() - timedelta(days=40))
        )
        session.execute(
            update(EvidenceFile)
            .where(EvidenceFile.id == old_unused.id)
            .values(uploaded_at=utcnow() - timedelta(hours=30))
        )
        session.commit()

        def ids(order: ReplacementOrder) -> list[int]:
            return sorted(session.scalars(select(EvidenceFile.id).where(EvidenceFile.order_id == order.id)))

        return Vault(ids(old), ids(recent), ids(open_order), old_unused.id, fresh_unused.id, old.id)


def _purged(cli: Cli) -> set[int]:
    with cli.sessions() as session:
        return set(session.scalars(select(EvidenceFile.id).where(EvidenceFile.ciphertext.is_(None))))


class TestEvidencePurge:
    """``simkeep evidence purge [--json]``."""

    def test_purges_old_closed_orders_and_old_unused_uploads(self, cli: Cli, vault: Vault) -> None:
        """The JSON counts the files of orders closed over 30 days ago and unused uploads over a day old."""
        assert cli.json("evidence", "purge") == {"purged": 3, "closed_orders": 2, "orphans": 1}
        assert _purged(cli) == {*vault.old_closed, vault.old_unused}

    def test_purge_is_committed_and_audited(self, cli: Cli, vault: Vault) -> None:
        """The deletion survives the command, and the audit log says what was purged."""
        cli.json("evidence", "purge")
        with cli.sessions() as session:
            entry = session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "evidence.purged")
                .order_by(AuditEntry.id.desc())
            ).one()
            purged = session.scalars(select(EvidenceFile).where(EvidenceFile.id.in_(vault.old_closed))).all()
        assert entry.data == {"closed_orders": 2, "orphans": 1}
        assert all(f.purged_at is not None and f.nonce is None for f in purged)

    def test_verdicts_stay(self, cli: Cli, vault: Vault) -> None:
        """The identity checks of the purged order are all still there, with their scores."""

        def checks() -> list[tuple[object, ...]]:
            with cli.sessions() as session:
                rows = session.scalars(
                    select(IdentityCheck)
                    .where(IdentityCheck.order_id == vault.old_order_id)
                    .order_by(IdentityCheck.id)
                )
                return [(c.kind, c.verdict, c.score, tuple(c.reasons)) for c in rows]

        before = checks()
        cli.json("evidence", "purge")
        assert checks() == before
        assert ("face", "reject", 0.81) in [c[:3] for c in before]

    def test_text_output(self, cli: Cli, vault: Vault) -> None:
        """Without --json a person reads the counts."""
        result = cli.run("evidence", "purge")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == (
            "purged 3 evidence files: 2 of orders closed over 30 days ago, 1 unused uploads"
        )

    def test_second_run_changes_nothing(self, cli: Cli, vault: Vault) -> None:
        """Run twice (cron overlapping a manual run): the second finds nothing and writes nothing."""
        cli.json("evidence", "purge")
        before = cli.state()
        assert cli.json("evidence", "purge") == {"purged": 0, "closed_orders": 0, "orphans": 0}
        assert cli.state() == before

    def test_empty_database(self, cli: Cli) -> None:
        """With no evidence at all the command succeeds and reports zero."""
        assert cli.json("evidence", "purge") == {"purged": 0, "closed_orders": 0, "orphans": 0}

    def test_retention_days_come_from_the_settings(
        self, cli: Cli, vault: Vault, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SIMKEEP_EVIDENCE_RETENTION_DAYS=60 keeps the order closed 40 days ago."""
        monkeypatch.setenv("SIMKEEP_EVIDENCE_RETENTION_DAYS", "60")
        get_settings.cache_clear()
        assert cli.json("evidence", "purge") == {"purged": 1, "closed_orders": 0, "orphans": 1}
        assert _purged(cli) == {vault.old_unused}

    def test_unknown_option_is_refused(self, cli: Cli, vault: Vault) -> None:
        """A mistyped option is a usage error and purges nothing."""
        before = cli.state()
        result = cli.run("evidence", "purge", "--dry")
        assert result.exit_code == 2
        assert "No such option" in result.output
        assert cli.state() == before
