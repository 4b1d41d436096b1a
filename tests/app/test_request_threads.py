"""SIMKEEP_REQUEST_THREADS: the threads of a `simkeep serve` worker that run requests' synchronous work."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import pytest
from anyio import to_thread
from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from simkeep.app import create_app, request_session_slots
from simkeep.auth.deps import DbSession
from simkeep.config import Settings
from simkeep.models import Line, ProofAttempt, ReplacementOrder, StaffRole
from tests import factories


def _limit(client: TestClient) -> float:
    """The thread limit of the app's event loop (read on the loop itself)."""
    assert client.portal is not None
    return client.portal.call(lambda: to_thread.current_default_thread_limiter().total_tokens)


def test_the_default_is_the_frameworks() -> None:
    assert Settings().request_threads == 40


def test_the_app_runs_requests_on_that_many_threads(fresh: tuple[Engine, Settings]) -> None:
    _engine, settings = fresh
    with TestClient(create_app(settings.model_copy(update={"request_threads": 3}))) as client:
        assert _limit(client) == 3
        assert client.get("/api/v1/fees").status_code == 200


def test_requests_beyond_the_threads_wait_for_one_and_all_succeed(fresh: tuple[Engine, Settings]) -> None:
    """With one thread, twelve reads at once are answered one after another, none refused. (On SQLite a read
    holds the write lock until its session ends: ended on a thread of its own, the first read waited for the
    thread the second held while the second waited for the lock, and reads failed DATABASE_BUSY.)"""
    _engine, settings = fresh
    with TestClient(create_app(settings.model_copy(update={"request_threads": 1}))) as client:
        assert _limit(client) == 1
        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(lambda _: client.get("/api/v1/fees").status_code, range(12)))
        assert statuses == [200] * 12


@pytest.mark.parametrize("value", ["0", "-1", "201", "many"])
def test_a_bad_value_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMKEEP_REQUEST_THREADS", value)
    with pytest.raises(ValidationError, match="request_threads"):
        Settings()


@pytest.mark.parametrize("value", ["0", "-1", "1001", "many"])
def test_a_bad_pool_size_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMKEEP_DB_POOL_SIZE", value)
    with pytest.raises(ValidationError, match="db_pool_size"):
        Settings()


@pytest.mark.parametrize("value", ["0", "-1", "3001", "many"])
def test_a_bad_session_bound_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMKEEP_REQUEST_SESSIONS", value)
    with pytest.raises(ValidationError, match="request_sessions"):
        Settings()


def test_requests_hold_sessions_up_to_the_pool_less_its_other_users() -> None:
    assert Settings().request_sessions is None
    assert request_session_slots(Settings()) == 26  # 10 + 20 on overflow, 4 kept for the others
    assert request_session_slots(Settings(db_pool_size=2)) == 2
    assert request_session_slots(Settings(db_pool_size=1)) == 1


def test_the_session_bound_as_set_never_above_the_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMKEEP_REQUEST_SESSIONS", "2")
    assert request_session_slots(Settings()) == 2
    assert request_session_slots(Settings(request_sessions=100)) == 26
    assert request_session_slots(Settings(request_sessions=100, db_pool_size=40)) == 100


def test_one_session_at_a_time_serves_a_burst_of_writes(fresh: tuple[Engine, Settings]) -> None:
    """With one request session and many threads, twelve failing store submissions and twelve reads at once
    are each answered in turn: the submissions refused (each failed proof kept, no order), the reads
    answered."""
    engine, settings = fresh
    username, msisdn = _clerk_and_holder(engine, settings)
    app = create_app(settings.model_copy(update={"request_sessions": 1}))
    with TestClient(app) as client:
        assert app.state.request_sessions.value == 1
        headers = {"Authorization": f"Bearer {_staff_token(client, username)}"}
        body = {"msisdn": msisdn, "channel": "store", "in_person_document_number": "X0000000000000000"}

        def call(n: int) -> int:
            if n % 2:
                return client.get(f"/api/v1/lines/{msisdn}", headers=headers).status_code
            return client.post("/api/v1/replacements", json=body, headers=headers).status_code

        with ThreadPoolExecutor(max_workers=24) as pool:
            statuses = list(pool.map(call, range(24)))
        assert app.state.request_sessions.value == 1  # every slot given back
    assert statuses[1::2] == [200] * 12
    assert all(400 <= status < 500 and status != 409 for status in statuses[::2]), statuses
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(ReplacementOrder)) == 0
        assert session.scalar(select(func.count()).select_from(ProofAttempt)) == 12


def _clerk_and_holder(engine: Engine, settings: Settings) -> tuple[str, str]:
    """A store clerk's username and a holder's number, committed."""
    with Session(engine) as session:
        store = factories.store(session)
        clerk = factories.staff(session, StaffRole.CLERK, store_row=store)
        msisdn = factories.holder(session, settings).msisdn
        session.commit()
        return clerk.username, msisdn


def _staff_token(client: TestClient, username: str) -> str:
    answer = client.post(
        "/api/v1/auth/staff/token", json={"username": username, "password": factories.STAFF_PASSWORD}
    )
    token: str = answer.json()["access_token"]
    return token


def test_failing_requests_on_one_line_do_not_lock_each_other_out(fresh: tuple[Engine, Settings]) -> None:
    """With one thread, twelve store submissions for the same line with the wrong document at once: each
    locks the line, fails its proof and is refused, and each failed proof is kept (the transaction ends on
    the request's own thread: left for a thread of its own, it held the line while the next request held
    the only thread, waiting for the line). Nothing else changed: no order."""
    engine, settings = fresh
    username, msisdn = _clerk_and_holder(engine, settings)
    with TestClient(create_app(settings.model_copy(update={"request_threads": 1}))) as client:
        token = _staff_token(client, username)
        body = {"msisdn": msisdn, "channel": "store", "in_person_document_number": "X0000000000000000"}

        def submit(_: int) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return client.post("/api/v1/replacements", json=body, headers=headers).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(submit, range(12)))
    assert all(400 <= status < 500 and status != 409 for status in statuses), statuses
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(ReplacementOrder)) == 0
        assert session.scalar(select(func.count()).select_from(ProofAttempt)) == 12


def test_a_route_leaving_its_transaction_open_locks_no_one_out(fresh: tuple[Engine, Settings]) -> None:
    """A plain sync route (as the pages are, not the JSON API's route class) that locks a line and returns
    without ending its transaction (as a page showing an error does): twelve at once with one thread all
    answer, since the sessions end on threads apart from the request threads."""
    engine, settings = fresh
    with Session(engine) as session:
        msisdn = factories.holder(session, settings).msisdn
        session.commit()
    app = create_app(settings.model_copy(update={"request_threads": 1}))

    def hold(session: DbSession) -> JSONResponse:  # a response of its own, as a page's (no model to check)
        locked = session.execute(select(Line.id).where(Line.msisdn == msisdn).with_for_update()).first()
        time.sleep(0.02)
        return JSONResponse({"locked": locked is not None})

    app.add_api_route("/test/hold", hold, methods=["POST"])
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: client.post("/test/hold").json(), range(12)))
    assert answers == [{"locked": True}] * 12


_LINES = select(Line.msisdn, Line.status, Line.suspension_reason, Line.last_activity_at).order_by(Line.id)


def test_a_burst_larger_than_the_pool_waits_its_turn(fresh: tuple[Engine, Settings]) -> None:
    """Twelve signed-in reads at once on a pool of three connections and one thread are all answered. (A
    signed-in request keeps its connection from the token's lookup to its endpoint, each in a trip to a
    thread. Unbounded, three requests held the three connections waiting for the thread, while the fourth
    held the thread waiting for a connection, until the pool's 30 s timeout failed it. The requests now
    wait for a session on the event loop, never more at once than the pool can serve besides the worker's
    other users of it.) Nothing is written: the lines are as they were."""
    engine, settings = fresh
    username, msisdn = _clerk_and_holder(engine, settings)
    with Session(engine) as session:
        before = session.execute(_LINES).all()
    small = settings.model_copy(update={"request_threads": 1, "db_pool_size": 1})
    app = create_app(small)
    with TestClient(app) as client:
        assert app.state.request_sessions.value == request_session_slots(small) == 1
        token = _staff_token(client, username)

        def read(_: int) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return client.get(f"/api/v1/lines/{msisdn}", headers=headers).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(read, range(12)))
    assert statuses == [200] * 12
    with Session(engine) as session:
        after = session.execute(_LINES).all()
    assert after == before


def test_a_client_slow_to_send_its_form_holds_no_session(fresh: tuple[Engine, Settings]) -> None:
    """With one request session, a page that reads its form itself (as the portal's uploads do) while its
    client has sent only half of it does not keep other requests waiting: the body is received before the
    request takes its session. Then the slow form arrives whole and is answered; nothing was written."""
    engine, settings = fresh
    with Session(engine) as session:
        before = session.execute(_LINES).all()
    app = create_app(settings.model_copy(update={"request_sessions": 1}))

    async def form_page(request: Request, session: DbSession) -> dict[str, str]:
        form = await request.form()
        session.execute(select(1))
        return {key: str(value) for key, value in form.items()}

    app.add_api_route("/test/form", form_page, methods=["POST"])
    rest_sent = anyio.Event()
    answers: dict[str, int | dict[str, str]] = {}

    async def slow_form() -> AsyncIterator[bytes]:
        yield b"first=1&"
        await rest_sent.wait()
        yield b"second=2"

    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://simkeep.test") as client:

                async def post_slowly() -> None:
                    headers = {"Content-Type": "application/x-www-form-urlencoded"}
                    answer = await client.post("/test/form", content=slow_form(), headers=headers)
                    answers["slow"] = answer.json()

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(post_slowly)
                    await anyio.sleep(0.2)  # the slow request is in, half its form still to come
                    with anyio.fail_after(10):  # before the fix: waited for the session for ever
                        answers["other"] = (await client.get("/api/v1/fees")).status_code
                    rest_sent.set()

    anyio.run(scenario)
    assert answers == {"other": 200, "slow": {"first": "1", "second": "2"}}
    with Session(engine) as session:
        assert session.execute(_LINES).all() == before
