"""``simkeep network ops`` and ``simkeep network retry`` through typer's CliRunner, on a real database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.models import AuditEntry, Job, NetworkOperation, NetworkOpKind, NetworkOpStatus
from tests import factories


@pytest.fixture
def cli(fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    """Runs ``simkeep network ...`` against the private database of ``fresh``."""
    settings = fresh[1]
    monkeypatch.setenv("SIMKEEP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SIMKEEP_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "test")
    monkeypatch.setenv("SIMKEEP_LOG_LEVEL", "WARNING")

    def run(*args: str) -> Result:
        get_settings.cache_clear()
        return CliRunner().invoke(app, ["network", *args])

    yield run
    get_settings.cache_clear()


@pytest.fixture
def failed_bar(fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]) -> int:
    """A bar operation that failed (its line's SIM was refused by the HLR), committed."""
    with fresh_session_factory() as session:
        holder = factories.holder(session, fresh[1])
        op = NetworkOperation(
            kind=NetworkOpKind.BAR,
            status=NetworkOpStatus.FAILED,
            line_id=holder.line.id,
            old_imsi=holder.sim.imsi,
            msisdn=holder.msisdn,
            attempts=3,
            last_error="refused by the HLR",
        )
        session.add(op)
        session.commit()
        return op.id


def _count(factory: Callable[[], Session], model: type, **where: object) -> int:
    with factory() as session:
        query = select(func.count()).select_from(model).filter_by(**where)
        return int(session.scalar(query) or 0)


class TestOpsCommand:
    """Listing the network operations."""

    def test_lists_with_masked_numbers(self, cli: Callable[..., Result], failed_bar: int) -> None:
        """The failed operation is listed with its error; the number is masked."""
        result = cli("ops", "--json")
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)
        assert [(r["id"], r["kind"], r["status"], r["last_error"]) for r in rows] == [
            (failed_bar, "bar", "failed", "refused by the HLR")
        ]
        assert "*" in rows[0]["msisdn"]

    def test_filter_by_status(self, cli: Callable[..., Result], failed_bar: int) -> None:
        """--status pending shows none of the failed ones."""
        result = cli("ops", "--status", "pending")
        assert result.exit_code == 0, result.output
        assert "no network operations" in result.output

    def test_unknown_status_is_refused(self, cli: Callable[..., Result], failed_bar: int) -> None:
        """A status that does not exist is a clear error."""
        result = cli("ops", "--status", "sideways", "--json")
        assert result.exit_code == 1
        assert json.loads(result.output)["error"] == "INVALID_STATUS"


class TestRetryCommand:
    """Queueing a failed operation again."""

    def test_retry_queues_and_audits(
        self, cli: Callable[..., Result], failed_bar: int, fresh_session_factory: Callable[[], Session]
    ) -> None:
        """The failed operation goes back to pending with a job, and the retry is audited."""
        result = cli("retry", str(failed_bar), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == {"id": failed_bar, "status": "pending"}
        assert _count(fresh_session_factory, Job, kind="network.apply") == 1
        assert _count(fresh_session_factory, AuditEntry, action="network.operation_retried") == 1

    def test_retry_twice_is_refused_and_changes_nothing(
        self, cli: Callable[..., Result], failed_bar: int, fresh_session_factory: Callable[[], Session]
    ) -> None:
        """A pending operation cannot be retried: clear error, no second job."""
        assert cli("retry", str(failed_bar)).exit_code == 0
        result = cli("retry", str(failed_bar), "--json")
        assert result.exit_code == 1
        assert json.loads(result.output)["error"] == "NETWORK_OPERATION_NOT_RETRYABLE"
        assert _count(fresh_session_factory, Job, kind="network.apply") == 1

    def test_unknown_operation(
        self, cli: Callable[..., Result], failed_bar: int, fresh_session_factory: Callable[[], Session]
    ) -> None:
        """An id that does not exist is NETWORK_OPERATION_NOT_FOUND and changes nothing."""
        result = cli("retry", "999999", "--json")
        assert result.exit_code == 1
        assert json.loads(result.output)["error"] == "NETWORK_OPERATION_NOT_FOUND"
        assert _count(fresh_session_factory, Job, kind="network.apply") == 0
