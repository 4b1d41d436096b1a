"""``simkeep esim``: show and retry an order's profile, and run the SM-DP+ test double."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.db.engine import make_session_factory
from simkeep.esim.client import Es2PlusClient
from simkeep.jobs.worker import drain
from simkeep.logging import configure_logging
from simkeep.models import AuditEntry, SimKind
from tests import factories
from tests.esim.conftest import CALLBACK_TOKEN, REQUESTER, Smdp, esim_settings, free_port, paid_esim_order


@dataclass
class Cli:
    """The command, configured through the environment for a private database and the double."""

    runner: CliRunner
    settings: Settings
    sessions: sessionmaker[Session]

    def run(self, *args: str) -> Result:
        """Run ``simkeep ARGS``; logging goes back to the real stderr afterwards."""
        try:
            return self.runner.invoke(app, list(args))
        finally:
            configure_logging(self.settings)

    def json(self, *args: str, exit_code: int = 0) -> Any:
        """Run with --json and parse the output."""
        result = self.run(*args, "--json")
        assert result.exit_code == exit_code, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(fresh: tuple[Engine, Settings], smdp: Smdp, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The CLI on the test's private database, pointed at the test double."""
    engine, base = fresh
    settings = esim_settings(base.database_url, Path(base.otp_outbox_dir), smdp.url)
    for name, value in {
        "SIMKEEP_DATABASE_URL": settings.database_url,
        "SIMKEEP_SECRET_KEY": settings.secret_key,
        "SIMKEEP_ENVIRONMENT": "test",
        "SIMKEEP_OTP_TRANSPORT": "file",
        "SIMKEEP_OTP_OUTBOX_DIR": settings.otp_outbox_dir,
        "SIMKEEP_ESIM_SMDP_URL": smdp.url,
        "SIMKEEP_ESIM_REQUESTER_ID": REQUESTER,
        "SIMKEEP_ESIM_CALLBACK_TOKEN": CALLBACK_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        yield Cli(CliRunner(), settings, make_session_factory(engine))
    finally:
        get_settings.cache_clear()


def _order(cli: Cli, smdp: Smdp, *, load: bool) -> tuple[str, str]:
    """A paid eSIM order whose ordering job has run; returns (reference, iccid)."""
    with cli.sessions() as db:
        esim = factories.sim(db, kind=SimKind.ESIM)
        if load:
            smdp.load(esim.iccid)
        order = paid_esim_order(db, cli.settings, factories.holder(db, cli.settings))
        drain(db, cli.settings)
        db.commit()
        return order.reference, esim.iccid


class TestShow:
    """``simkeep esim show``."""

    def test_shows_the_error(self, cli: Cli, smdp: Smdp) -> None:
        """A profile the SM-DP+ refused is shown with its subject, reason and message."""
        reference, iccid = _order(cli, smdp, load=False)
        shown = cli.json("esim", "show", reference)
        assert (shown["state"], shown["error_subject"], shown["error_reason"]) == ("error", "8.2.1", "3.9")
        assert shown["iccid_last4"] == iccid[-4:]
        text = cli.run("esim", "show", reference)
        assert "8.2.1/3.9" in text.stdout

    def test_unknown_order(self, cli: Cli) -> None:
        """An unknown reference ends with ORDER_NOT_FOUND and exit code 1."""
        result = cli.json("esim", "show", "RO-NOPE2345", exit_code=1)
        assert result["error"] == "ORDER_NOT_FOUND"


class TestRetry:
    """``simkeep esim retry``."""

    def test_retry_releases_once_fixed(self, cli: Cli, smdp: Smdp) -> None:
        """After the profile was loaded at the SM-DP+, a retry releases it, and the retry is audited."""
        reference, iccid = _order(cli, smdp, load=False)
        smdp.load(iccid)
        shown = cli.json("esim", "retry", reference)
        assert (shown["state"], shown["error_message"]) == ("released", None)
        assert smdp.profile(iccid)["state"] == "released"
        with cli.sessions() as db:
            assert db.scalar(select(AuditEntry).where(AuditEntry.action == "esim.retry")) is not None

    def test_retry_that_fails_again_exits_non_zero(self, cli: Cli, smdp: Smdp) -> None:
        """A retry the SM-DP+ refuses again shows the error and exits 1."""
        reference, _iccid = _order(cli, smdp, load=False)
        shown = cli.json("esim", "retry", reference, exit_code=1)
        assert shown["state"] == "error"

    def test_nothing_to_retry(self, cli: Cli, smdp: Smdp) -> None:
        """A released profile has nothing to retry: ESIM_NOTHING_TO_RETRY, and nothing is called."""
        reference, _iccid = _order(cli, smdp, load=True)
        calls = len(smdp.calls())
        result = cli.json("esim", "retry", reference, exit_code=1)
        assert result["error"] == "ESIM_NOTHING_TO_RETRY"
        assert len(smdp.calls()) == calls


class TestTestSmdp:
    """``simkeep esim test-smdp`` runs the test double."""

    def test_serves_es2plus(self) -> None:
        """The command serves ES2+ on the port given; downloadOrder works against it (any valid ICCID)."""
        port = free_port()
        env = {**os.environ, "SIMKEEP_ESIM_REQUESTER_ID": "demo-operator"}
        proc = subprocess.Popen(  # noqa: S603 - our own command, fixed arguments
            [str(Path(sys.executable).with_name("simkeep")), "esim", "test-smdp", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/test-control/calls", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        pytest.fail("the test double did not start")
                    time.sleep(0.2)
            iccid = factories.make_iccid(990_001)
            with Es2PlusClient(f"http://127.0.0.1:{port}", requester_id="demo-operator") as client:
                assert client.download_order(iccid=iccid) == iccid
        finally:
            proc.terminate()
            proc.wait(timeout=10)
