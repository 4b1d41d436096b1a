"""Tests of SIM stock, and the harness that runs both bulk imports (``sims import``, ``lines import``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.db.engine import make_session_factory
from simkeep.models import AuditEntry
from tests.helpers import snapshot


class Deadlock(Exception):
    """Test double of psycopg's error when PostgreSQL fails a transaction to break a deadlock."""

    sqlstate = "40P01"


@dataclass
class ImportCli:
    """A ``simkeep`` command wired to a private, migrated database, with a folder for its CSV files."""

    runner: CliRunner
    engine: Engine
    settings: Settings
    sessions: Callable[[], Session]
    folder: Path

    def write(self, header: str, rows: list[str], *, name: str = "import.csv", newline: str = "\n") -> Path:
        """A CSV file: ``header`` on line 1, then ``rows`` as written (line N of the file is rows[N - 2])."""
        path = self.folder / name
        path.write_bytes(newline.join([header, *rows, ""]).encode())
        return path

    def run(self, command: str, path: Path, *, as_json: bool = True) -> Result:
        """Run ``simkeep COMMAND import PATH [--json]``."""
        return self.runner.invoke(app, [command, "import", str(path), *(["--json"] if as_json else [])])

    def report(self, command: str, path: Path) -> tuple[int, dict[str, Any]]:
        """Run the import with --json; its exit code and what it printed, parsed."""
        result = self.run(command, path)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result.exit_code, json.loads(result.stdout)

    def state(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every table but the audit log."""
        with self.sessions() as session:
            return snapshot(session, exclude=("audit_log",))

    def audit(self) -> list[AuditEntry]:
        """The audit log, oldest first."""
        with self.sessions() as session:
            return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def import_cli(
    fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch, folder: Path
) -> Iterator[ImportCli]:
    """Body of the ``cli`` fixture of the import tests: the command configured through the environment."""
    engine, settings = fresh
    monkeypatch.setenv("SIMKEEP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SIMKEEP_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "test")
    get_settings.cache_clear()
    try:
        yield ImportCli(CliRunner(), engine, settings, make_session_factory(engine), folder)
    finally:
        get_settings.cache_clear()


def errors_of(report: dict[str, Any]) -> list[tuple[int, str, str]]:
    """The reported errors as (line, field, reason)."""
    return [(e["line"], e["field"], e["reason"]) for e in report["errors"]]
