"""The request's session as ``simkeep serve`` makes it (an async dependency over the app's own engine)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from simkeep.app import create_app
from simkeep.auth.deps import get_session
from simkeep.config import Settings
from simkeep.db.engine import make_session_factory
from simkeep.models import ProofAttempt
from tests import factories


@pytest.fixture
def served(fresh: tuple[Engine, Settings]) -> Iterator[tuple[TestClient, Engine, str]]:
    """The app owning its database (no test scope handed in), and a holder's number."""
    engine, settings = fresh
    with Session(engine) as session:
        msisdn = factories.holder(session, settings).msisdn
        session.commit()
    with TestClient(create_app(settings)) as client:
        yield client, engine, msisdn


def _checked_out(client: TestClient) -> int:
    """Connections of the app's own engine still out of its pool once the requests are over.

    A request's session may be closed just after its answer is sent, and the CAMARA runtime's heartbeat
    borrows a connection now and then, so a connection out at one instant is waited for (a leaked one never
    comes back: the answer is then the count after the wait).
    """
    with client.app.state.session_scope() as session:  # type: ignore[attr-defined]
        pool = session.get_bind().pool
    deadline = time.monotonic() + 10
    while pool.checkedout() and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    return pool.checkedout()  # type: ignore[attr-defined, no-any-return]


class TestRequestSession:
    """The session commits what the endpoint commits, keeps a recorded failed proof, and gives back its
    connection however the request ends."""

    def test_a_failed_proof_is_kept_though_the_request_fails(
        self, served: tuple[TestClient, Engine, str]
    ) -> None:
        """A wrong service password is refused and its attempt is committed all the same (it counts toward
        the lock)."""
        client, engine, msisdn = served
        r = client.post("/api/v1/auth/line/token", json={"msisdn": msisdn, "service_password": "wrong-pass"})
        assert r.status_code in (401, 403), r.text
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(ProofAttempt)) == 1
        assert _checked_out(client) == 0

    def test_a_request_that_only_reads_gives_its_connection_back(
        self, served: tuple[TestClient, Engine, str]
    ) -> None:
        """A read ends its transaction without a commit: the connection goes back to the pool all the same."""
        client, _engine, _msisdn = served
        for _ in range(3):
            assert client.get("/api/v1/fees").status_code == 200
        assert _checked_out(client) == 0

    def test_a_request_that_fails_rolls_back_and_gives_its_connection_back(
        self, served: tuple[TestClient, Engine, str]
    ) -> None:
        """A request refused after its reads (an unknown order) leaves no connection out."""
        client, _engine, msisdn = served
        r = client.post(
            "/api/v1/auth/line/token", json={"msisdn": msisdn, "service_password": factories.PASSWORD}
        )
        assert r.status_code == 200, r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = client.get("/api/v1/replacements/NOPE", headers=headers)
        assert (r.status_code, r.json()["code"]) == (404, "ORDER_NOT_FOUND")
        assert _checked_out(client) == 0


class TestCancelledRequest:
    """A request cancelled while its session is in a transaction (the client went away) still ends it."""

    def test_the_connection_goes_back_though_the_request_is_cancelled(
        self, fresh: tuple[Engine, Settings]
    ) -> None:
        """The session's rollback and close run to the end inside a cancelled scope, and the request's
        session slot is given back."""
        engine, _settings = fresh
        factory = make_session_factory(engine)
        request = SimpleNamespace(
            method="GET", app=SimpleNamespace(state=SimpleNamespace(session_factory=factory))
        )

        async def cancelled_request() -> None:
            request.app.state.session_endings = anyio.CapacityLimiter(4)  # as the app's lifespan makes them
            request.app.state.request_sessions = anyio.Semaphore(2)
            requests_session = get_session(request)  # type: ignore[arg-type]
            session = await anext(requests_session)
            session.execute(select(1))  # in a transaction, holding a connection
            assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
            with anyio.CancelScope() as scope:
                scope.cancel()
                await requests_session.aclose()
            assert request.app.state.request_sessions.value == 2  # its slot is free again

        anyio.run(cancelled_request)
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
