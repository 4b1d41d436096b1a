"""CAMARA fixtures: the app with the CAMARA router mounted, clients, tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from simkeep.camara import clients, repository
from simkeep.camara.api import router, runtime_of
from simkeep.camara.cli import app as clients_app
from simkeep.camara.runtime import CamaraRuntime
from simkeep.config import Settings, get_settings
from simkeep.logging import configure_logging

ALL_SCOPES = ["number-recycling:check", "sim-swap:check", "sim-swap:retrieve-date"]


def mount(app: FastAPI) -> None:
    """Mount the CAMARA router unless the app already has it (once it is registered in simkeep.api)."""
    if not any(getattr(r, "path", None) == "/oauth2/token" for r in app.routes):
        app.include_router(router)


@pytest.fixture
def camara_settings(settings: Settings) -> Settings:
    """Test settings: the client cache off (changes apply at once), the writer left to the tests."""
    return settings.model_copy(
        update={"camara_client_cache_seconds": 0.0, "camara_query_flush_seconds": 3600.0}
    )


@pytest.fixture
def api(db: Session, camara_settings: Settings) -> Iterator[TestClient]:
    """The ASGI app with the CAMARA routes, sharing the test's rolled-back session."""
    from simkeep.app import create_app

    @contextmanager
    def scope() -> Iterator[Session]:
        db.commit()
        try:
            yield db
        finally:
            db.rollback()

    app = create_app(camara_settings, session_scope=scope)
    mount(app)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def runtime(api: TestClient) -> CamaraRuntime:
    """The CAMARA runtime of the running test app."""
    return runtime_of(api.app)


@dataclass
class Rp:
    """A relying party created for a test."""

    client_id: str
    secret: str
    pk: int


@pytest.fixture
def make_rp(db: Session, camara_settings: Settings) -> Any:
    """Create relying parties: ``make_rp(scopes=[...], rps=..., quota=...)``."""

    def make(
        scopes: list[str] | None = None, *, rps: int = 1000, quota: int = 1_000_000, name: str = "Bank"
    ) -> Rp:
        issued = clients.create_client(
            db,
            camara_settings,
            name=name,
            scopes=scopes or ALL_SCOPES,
            requests_per_second=rps,
            daily_quota=quota,
        )
        db.commit()
        return Rp(issued.client.client_id, issued.secret, issued.client.id)

    return make


def token_for(api: TestClient, rp: Rp, scope: str | None = None) -> str:
    """An access token for ``rp`` through the token endpoint."""
    form = {"grant_type": "client_credentials", "client_id": rp.client_id, "client_secret": rp.secret}
    if scope is not None:
        form["scope"] = scope
    response = api.post("/oauth2/token", data=form)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def logged(session: Session, client_pk: int | None = None) -> list[repository.LoggedQuery]:
    """The recorded queries (of one client), oldest first, unpacked from their batches."""
    return repository.logged_queries(session, client_pks=None if client_pk is None else [client_pk])


def log_queries(
    session: Session,
    client_pk: int,
    n: int,
    *,
    asked_at: datetime,
    api: str = "sim-swap.check",
    msisdn: str | None = None,
    status: int = 200,
) -> None:
    """Record ``n`` queries of one client asked at ``asked_at``, as a worker's flush writes them."""
    asked_us = (asked_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    repository.insert_queries(session, [(client_pk, api, msisdn, "x", status, asked_us)] * n)
    session.commit()


def bearer(token: str, **headers: str) -> dict[str, str]:
    """Request headers with the token."""
    return {"Authorization": f"Bearer {token}", **headers}


class Cli:
    """``simkeep clients`` against the private database."""

    def __init__(self, settings: Settings) -> None:
        self.runner = CliRunner()
        self.settings = settings

    def run(self, *args: str) -> Any:
        """Run a command; logging is restored afterwards."""
        try:
            return self.runner.invoke(clients_app, list(args))
        finally:
            configure_logging(self.settings)

    def json(self, *args: str) -> Any:
        """Run with --json, expect success, parse the output."""
        result = self.run(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    """The clients CLI, configured through the environment."""
    settings = fresh[1]
    monkeypatch.setenv("SIMKEEP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SIMKEEP_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SIMKEEP_ENVIRONMENT", "test")
    monkeypatch.setenv("SIMKEEP_LOG_LEVEL", "WARNING")
    get_settings.cache_clear()
    try:
        yield Cli(settings)
    finally:
        get_settings.cache_clear()
