"""``simkeep notifications``: the receipt listener and test messages, from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from click.testing import Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from simkeep.config import Settings, get_settings
from simkeep.jobs.worker import drain
from simkeep.models import Job
from simkeep.notifications.cli import TEST_BODY, TEST_SUBJECT, app
from simkeep.notifications.receipts import RECEIPT
from tests.conftest import TEST_SECRET
from tests.notifications.conftest import SMPP_PASSWORD, SMPP_SYSTEM_ID, Smsc, SmtpServer
from tests.notifications.support import queue

Run = Callable[..., Result]


@pytest.fixture
def run(fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """Run ``simkeep notifications ARGS`` on the private database with SIMKEEP_* variables set."""
    monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "test")
    monkeypatch.setenv("SIMKEEP_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("SIMKEEP_DATABASE_URL", fresh[1].database_url)

    def invoke(*args: str, **env: str) -> Result:
        for name, value in env.items():
            monkeypatch.setenv(f"SIMKEEP_{name.upper()}", value)
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args))

    logging_config = structlog.get_config()
    yield invoke
    get_settings.cache_clear()
    # The commands configure logging onto the runner's stderr, which is closed once a command has run.
    structlog.configure(**logging_config)


def smpp_env(server: Smsc) -> dict[str, Any]:
    """The variables that point simkeep at ``server``."""
    return {
        "smpp_host": "127.0.0.1",
        "smpp_port": str(server.port),
        "smpp_system_id": SMPP_SYSTEM_ID,
        "smpp_password": SMPP_PASSWORD,
    }


class TestReceiptsCommand:
    """``simkeep notifications receipts``."""

    def test_receipts_are_written_as_jobs(
        self,
        run: Run,
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
        smsc: Callable[..., Smsc],
    ) -> None:
        """The listener binds as receiver, writes each pending receipt as a job, and reports how many."""
        server = smsc(receipts="receiver")
        settings = server.settings(fresh[1])
        with fresh_session_factory() as session:
            queue(session, settings, channel="sms")
            session.commit()
        with fresh_session_factory() as session:
            drain(session, settings)
            session.commit()
        result = run("receipts", "--exit-when-idle", "--idle-seconds", "0.5", "--json", **smpp_env(server))
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"receipts": 1, "links": 1}
        with fresh_session_factory() as session:
            (job,) = session.scalars(select(Job).where(Job.kind == RECEIPT))
        assert job.payload["state"] == "DELIVRD"
        assert job.payload["message_id"] == server.of("submit_sm")[-1]["message_id"]

    def test_refused_bind_exits_with_an_error(self, run: Run, smsc: Callable[..., Smsc]) -> None:
        """Wrong credentials end the command with the SMSC's answer and exit status 1."""
        server = smsc()
        env = smpp_env(server) | {"smpp_password": "wrong"}
        result = run("receipts", "--exit-when-idle", "--json", **env)
        assert result.exit_code == 1
        error = json.loads(result.stdout)
        assert error["error"] == "SMPP_FAILED"
        assert "refused to bind 'simkeep'" in error["message"]

    def test_unconfigured_smpp_is_refused(self, run: Run) -> None:
        """Without an SMPP account the command says what to set."""
        result = run("receipts", "--exit-when-idle", "--json")
        assert result.exit_code == 1
        assert json.loads(result.stdout)["error"] == "SMPP_NOT_CONFIGURED"


class TestSendTestCommand:
    """``simkeep notifications send-test``."""

    def test_test_email_reaches_the_server(self, run: Run, smtp_server: Callable[..., SmtpServer]) -> None:
        """A test e-mail goes through the configured SMTP server; the output masks the address."""
        server = smtp_server()
        env = {
            "email_transport": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": str(server.port),
            "smtp_tls": "off",
        }
        result = run("send-test", "--channel", "email", "--to", "li.na@example.org", "--json", **env)
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert (shown["to"], shown["transport"]) == ("l***@example.org", "smtp")
        (got,) = server.received
        assert got.email["Subject"] == TEST_SUBJECT
        assert got.email.get_content().strip() == TEST_BODY
        assert got.email["Message-ID"] == shown["provider_message_id"]

    def test_test_sms_reaches_the_smsc(self, run: Run, smsc: Callable[..., Smsc]) -> None:
        """A test SMS is submitted to the configured SMSC."""
        server = smsc()
        result = run(
            "send-test",
            "--channel",
            "sms",
            "--to",
            "+8613912345678",
            sms_transport="smpp",
            **smpp_env(server),
        )
        assert result.exit_code == 0, result.output
        (submit,) = server.wait_for("submit_sm")
        assert submit["destination_addr"] == "8613912345678"
        assert "handed to the smpp transport" in result.stdout

    def test_failure_is_reported(self, run: Run, closed_port: int) -> None:
        """A server that cannot be reached ends the command with the reason and exit status 1."""
        env = {
            "email_transport": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": str(closed_port),
            "smtp_tls": "off",
        }
        result = run("send-test", "--channel", "email", "--to", "li.na@example.org", "--json", **env)
        assert result.exit_code == 1
        assert "could not be reached" in json.loads(result.stdout)["message"]

    def test_unknown_channel_is_a_usage_error(self, run: Run) -> None:
        """Only email and sms are channels."""
        result = run("send-test", "--channel", "fax", "--to", "x")
        assert result.exit_code == 2
