"""Privacy of existence: an unknown number costs what a known one does, and an unknown client id, a wrong
secret, a disabled client and a right secret cost the same (CONVENTIONS: "unknown numbers cost the same time
as known ones").

The cost is compared as work done, which a loaded machine cannot disturb: the SQL statements sent to the
database (the same statements, in the same number) and the secret hashes and constant-time comparisons
computed. One statistical check compares median times of interleaved calls with bounds wide enough (3x)
that scheduling noise cannot reach them, while a second query for known numbers only would.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from simkeep.camara import clients, repository
from simkeep.camara.api import runtime_of
from simkeep.camara.errors import OAuthError
from simkeep.camara.reader import PostgresSwapReader, SqliteSwapReader, reader_for
from simkeep.config import Settings
from simkeep.models import Line, SimChange, SimChangeChannel
from tests import factories
from tests.camara.conftest import Rp, bearer, token_for

UNKNOWN = "+8613999999999"


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements sent on ``engine`` inside the block, in order."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def line(db: Session, settings: Settings) -> Line:
    """A known line, activated long ago, with its first SIM."""
    holder = factories.holder(db, settings)
    holder.line.activated_at = datetime.now(UTC) - timedelta(days=300)
    db.commit()
    return holder.line


def _sql_of(engine: Engine, call: Callable[[], Any]) -> list[str]:
    with statements(engine) as sent:
        call()
    # The test's rolled-back session wraps each request in a savepoint: those are the fixture's, not the
    # code's, and their names differ from call to call.
    return [s for s in sent if not s.upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO"))]


class TestUnknownNumberCost:
    """The CAMARA operations do the same database work for an unknown number as for a known one."""

    @pytest.mark.parametrize(
        ("path", "extra"),
        [
            ("/sim-swap/v2/check", {"maxAge": 240}),
            ("/sim-swap/v2/retrieve-date", {}),
            ("/number-recycling/v0.2/check", {"specifiedDate": "2024-01-01"}),
        ],
    )
    def test_same_statements_for_unknown_and_known(
        self, api: TestClient, make_rp: Any, engine: Engine, line: Line, path: str, extra: dict[str, Any]
    ) -> None:
        """An unknown number (404) and a known one (200) send the very same SQL statements."""
        token = token_for(api, make_rp(["sim-swap", "number-recycling:check"]))

        def ask(number: str, status: int) -> Callable[[], None]:
            def call() -> None:
                response = api.post(path, json={"phoneNumber": number, **extra}, headers=bearer(token))
                assert response.status_code == status, response.text

            return call

        ask(line.msisdn, 200)()  # warm: the client is cached, statements compiled
        known = _sql_of(engine, ask(line.msisdn, 200))
        unknown = _sql_of(engine, ask(UNKNOWN, 404))
        assert known, "the check reads the database"
        assert unknown == known

    def test_check_is_one_statement(self, api: TestClient, make_rp: Any, engine: Engine, line: Line) -> None:
        """With the client cached (as in service), a SIM Swap check is one statement, known number or not."""
        runtime = runtime_of(api.app)
        runtime.settings = runtime.settings.model_copy(update={"camara_client_cache_seconds": 60.0})
        token = token_for(api, make_rp(["sim-swap:check"]))
        api.post("/sim-swap/v2/check", json={"phoneNumber": line.msisdn}, headers=bearer(token))
        answers: list[int] = []

        def check(number: str) -> None:
            response = api.post("/sim-swap/v2/check", json={"phoneNumber": number}, headers=bearer(token))
            answers.append(response.status_code)

        for number in (line.msisdn, UNKNOWN):
            sent = _sql_of(engine, lambda n=number: check(n))
            assert len(sent) == 1
            assert "FROM lines" in sent[0]
        assert answers == [200, 404]

    def test_median_times_are_alike(self, api: TestClient, make_rp: Any, line: Line) -> None:
        """Interleaved checks of an unknown and a known number take alike median times (within 3x either
        way: noise on a loaded machine hits both series alike)."""
        token = token_for(api, make_rp(["sim-swap:check"], rps=100_000))
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        for _ in range(150):
            for name, number in (("known", line.msisdn), ("unknown", UNKNOWN)):
                start = time.perf_counter()
                api.post("/sim-swap/v2/check", json={"phoneNumber": number}, headers=bearer(token))
                times[name].append(time.perf_counter() - start)
        ratio = statistics.median(times["unknown"]) / statistics.median(times["known"])
        assert 1 / 3 < ratio < 3


class TestClientSecretCost:
    """The token endpoint's client authentication does the same work whatever is wrong."""

    @pytest.fixture
    def counted(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
        """Counts of secret hashes and constant-time comparisons computed by client authentication."""
        counts = {"hash": 0, "compare": 0}
        real_hash, real_compare = clients.keyed_hash, clients.constant_time_equal

        def keyed_hash(*args: Any, **kwargs: Any) -> str:
            counts["hash"] += 1
            return real_hash(*args, **kwargs)

        def constant_time_equal(a: str, b: str) -> bool:
            counts["compare"] += 1
            return real_compare(a, b)

        monkeypatch.setattr(clients, "keyed_hash", keyed_hash)
        monkeypatch.setattr(clients, "constant_time_equal", constant_time_equal)
        return counts

    def _cost(
        self,
        db: Session,
        engine: Engine,
        settings: Settings,
        counted: dict[str, int],
        client_id: str,
        secret: str,
    ) -> tuple[list[str], dict[str, int], bool]:
        counted.update(hash=0, compare=0)
        accepted = True

        def call() -> None:
            nonlocal accepted
            try:
                clients.authenticate_client(db, settings, client_id=client_id, secret=secret)
            except OAuthError:
                accepted = False

        sent = _sql_of(engine, call)
        return sent, dict(counted), accepted

    def test_unknown_id_wrong_secret_disabled_and_right_cost_the_same(
        self, db: Session, engine: Engine, camara_settings: Settings, make_rp: Any, counted: dict[str, int]
    ) -> None:
        """An unknown client id, a wrong secret, a disabled client and the right secret: one lookup, one
        secret hash and one constant-time comparison each; only the right one is accepted."""
        good: Rp = make_rp(["sim-swap:check"])
        off: Rp = make_rp(["sim-swap:check"], name="Closed bank")
        clients.disable_client(db, client_id=off.client_id)
        db.commit()
        cases = {
            "unknown id": ("rp_" + "0" * 24, good.secret),
            "wrong secret": (good.client_id, good.secret[:-1] + ("A" if good.secret[-1] != "A" else "B")),
            "disabled": (off.client_id, off.secret),
            "right": (good.client_id, good.secret),
        }
        costs = {
            name: self._cost(db, engine, camara_settings, counted, *pair) for name, pair in cases.items()
        }
        assert {name: accepted for name, (_, _, accepted) in costs.items()} == {
            "unknown id": False,
            "wrong secret": False,
            "disabled": False,
            "right": True,
        }
        work = {name: (len(sent), counts) for name, (sent, counts, _) in costs.items()}
        assert set(map(str, work.values())) == {str((1, {"hash": 1, "compare": 1}))}
        assert len({tuple(sent) for sent, _, _ in costs.values()}) == 1  # the same statement every time

    def test_token_endpoint_answers_alike(self, api: TestClient, make_rp: Any) -> None:
        """Over HTTP an unknown client and a wrong secret get the same 401 invalid_client answer."""
        good: Rp = make_rp(["sim-swap:check"])
        answers = []
        for client_id, secret in (("rp_nobody", good.secret), (good.client_id, "wrong")):
            form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
            response = api.post("/oauth2/token", data=form)
            answers.append((response.status_code, response.json()))
        assert answers[0] == answers[1]
        assert answers[0][0] == 401


@pytest.mark.concurrent
class TestReaderCost:
    """The served hot path (each worker's own read connection) runs one statement for any number."""

    def test_reader_answers_like_the_session_with_one_statement(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """The reader's facts equal the session path's; a known and an unknown number each cost the same
        single statement."""
        _, settings = fresh
        with fresh_session_factory() as s:
            line = factories.holder(s, settings).line
            s.commit()
            msisdn = line.msisdn
            expected = repository.swap_facts(s, msisdn)
        reader = reader_for(settings)
        sent: list[str] = []
        if isinstance(reader, SqliteSwapReader):
            reader.connection.set_trace_callback(sent.append)
        else:
            event.listen(reader.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
        try:
            assert reader.swap_facts(msisdn) == expected
            known = list(sent)
            sent.clear()
            assert reader.swap_facts(UNKNOWN) is None
            unknown = list(sent)
        finally:
            reader.close()
        assert len(known) == 1
        assert known == [s.replace(UNKNOWN, msisdn) for s in unknown]

    def test_event_loop_reads_answer_like_the_session(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """The reads made on the event loop (psycopg's async connections on PostgreSQL; the inline
        connection on SQLite) answer what the session does, a change committed in between included."""
        _, settings = fresh
        with fresh_session_factory() as s:
            line = factories.holder(s, settings).line
            s.commit()
            msisdn, line_id = line.msisdn, line.id
            expected = repository.swap_facts(s, msisdn)
        reader = reader_for(settings)

        async def read(number: str) -> Any:
            return reader.swap_facts(number) if reader.inline else await reader.aswap_facts(number)

        async def scenario() -> None:
            try:
                assert await read(msisdn) == expected
                assert await read(UNKNOWN) is None
                with fresh_session_factory() as s:
                    s.add(
                        SimChange(
                            line_id=line_id,
                            new_sim_id=factories.sim(s).id,
                            changed_at=datetime.now(UTC),
                            channel=SimChangeChannel.STORE,
                        )
                    )
                    s.commit()
                    now_expected = repository.swap_facts(s, msisdn)
                assert now_expected != expected
                assert await read(msisdn) == now_expected  # the same pooled connection sees the commit
            finally:
                await reader.aclose()

        asyncio.run(scenario())

    def test_concurrent_reads_share_statements_and_answer_each_their_own(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Checks arriving together on PostgreSQL are looked up by one statement per batch (the same number
        asked twice included), and every check gets its own number's facts; unknown numbers get None."""
        _, settings = fresh
        with fresh_session_factory() as s:
            numbers = [factories.holder(s, settings).line.msisdn for _ in range(3)]
            s.commit()
            expected = {n: repository.swap_facts(s, n) for n in numbers}
        expected[UNKNOWN] = None
        reader = reader_for(settings)
        if not isinstance(reader, PostgresSwapReader):
            reader.close()
            pytest.skip("SQLite reads inline, one statement per check (nothing to batch)")
        asked = [*numbers * 20, *[UNKNOWN] * 10]

        async def scenario() -> list[Any]:
            try:
                return list(await asyncio.gather(*(reader.aswap_facts(n) for n in asked)))
            finally:
                await reader.aclose()

        answers = asyncio.run(scenario())
        assert answers == [expected[n] for n in asked]
        assert 1 <= reader.statements < len(asked) // 4
        assert reader.looked_up <= reader.statements * len(expected)

    def test_a_failed_batch_fails_each_waiting_check_and_the_next_batch_works(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """When the database refuses a batch, every check waiting on it gets the error (none hangs); the
        connection is dropped and the next check opens a new one and answers."""
        _, settings = fresh
        with fresh_session_factory() as s:
            msisdn = factories.holder(s, settings).line.msisdn
            s.commit()
            expected = repository.swap_facts(s, msisdn)
        reader = reader_for(settings)
        if not isinstance(reader, PostgresSwapReader):
            reader.close()
            pytest.skip("SQLite reads inline (no batch to fail)")
        good_sql = reader.sql

        async def scenario() -> tuple[list[Any], Any]:
            try:
                reader.sql = "SELECT * FROM no_such_table WHERE %(msisdns)s IS NOT NULL"
                failed = await asyncio.gather(
                    *(reader.aswap_facts(msisdn) for _ in range(8)), return_exceptions=True
                )
                reader.sql = good_sql
                return failed, await asyncio.wait_for(reader.aswap_facts(msisdn), 10)
            finally:
                await reader.aclose()

        failed, after = asyncio.run(scenario())
        assert len(failed) == 8
        assert all(isinstance(f, psycopg.errors.UndefinedTable) for f in failed)
        assert after == expected
