"""Per-client rate limits and daily quotas (429), and the record of every query in ``api_query_batches``."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from simkeep.camara import clients
from simkeep.camara.auth import AccessToken
from simkeep.camara.errors import CamaraError
from simkeep.camara.reader import client_read_scope
from simkeep.camara.runtime import CamaraRuntime, QueryRecord, QueryRecorder
from simkeep.config import Settings
from simkeep.models import ApiQueryBatch, CamaraWorker, RelyingParty
from tests.camara.conftest import Rp, bearer, log_queries, logged, token_for
from tests.camara.spec import assert_conforms

URL = "/number-recycling/v0.2/check"
BODY = {"phoneNumber": "+8613999999999", "specifiedDate": "2024-01-01"}


def _codes(api: TestClient, token: str, n: int) -> list[int]:
    return [api.post(URL, json=BODY, headers=bearer(token)).status_code for _ in range(n)]


class TestRateLimit:
    """A token bucket per client and worker: ``requests_per_second`` a second, bursts up to that."""

    def test_burst_beyond_rate_is_429_too_many_requests(self, api: TestClient, make_rp: Any) -> None:
        """With 3 requests/s, a fourth request in the same instant is 429 TOO_MANY_REQUESTS."""
        token = token_for(api, make_rp(rps=3))
        assert _codes(api, token, 3) == [404, 404, 404]
        response = api.post(URL, json=BODY, headers=bearer(token, **{"x-correlator": "rate-1"}))
        assert response.status_code == 429
        assert response.json()["code"] == "TOO_MANY_REQUESTS"
        assert response.headers["x-correlator"] == "rate-1"
        assert_conforms("sim-swap.yaml", "/check", 429, response.json())

    def test_bucket_refills(self, api: TestClient, make_rp: Any) -> None:
        """After a refused burst, waiting a moment lets requests through again."""
        token = token_for(api, make_rp(rps=5))
        codes = _codes(api, token, 8)
        assert 429 in codes
        time.sleep(0.5)
        assert _codes(api, token, 1) == [404]

    def test_limits_are_per_client(self, api: TestClient, make_rp: Any) -> None:
        """One client's exhausted bucket does not limit another client."""
        first = token_for(api, make_rp(rps=1))
        second = token_for(api, make_rp(rps=1))
        assert _codes(api, first, 2) == [404, 429]
        assert _codes(api, second, 1) == [404]


class TestDailyQuota:
    """Answered queries per UTC day, counted from the query log as well as in memory."""

    def test_quota_exhausted_is_429_quota_exceeded(self, api: TestClient, make_rp: Any) -> None:
        """With a quota of 2, the third query of the day is 429 QUOTA_EXCEEDED."""
        token = token_for(api, make_rp(quota=2))
        assert _codes(api, token, 2) == [404, 404]
        response = api.post(URL, json=BODY, headers=bearer(token))
        assert (response.status_code, response.json()["code"]) == (429, "QUOTA_EXCEEDED")
        assert_conforms("sim-swap.yaml", "/check", 429, response.json())

    def test_queries_recorded_today_count(self, api: TestClient, make_rp: Any, db: Session) -> None:
        """Queries already logged for today (another worker's) use up the quota; refused ones (429) do not."""
        rp = make_rp(quota=2)
        now = datetime.now(UTC)
        log_queries(db, rp.pk, 1, asked_at=now, api="number-recycling.check", status=429)
        log_queries(db, rp.pk, 2, asked_at=now, api="number-recycling.check")
        token = token_for(api, rp)
        assert _codes(api, token, 1) == [429]

    def test_settled_count_is_carried_over(
        self, runtime: CamaraRuntime, make_rp: Any, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A reload reads only the last moments of the query log: what settled (older than the lag) is carried
        over from the previous load, and what is recent is counted afresh."""
        day = datetime.now(UTC) - timedelta(hours=2)
        monkeypatch.setattr("simkeep.camara.runtime._today_start", lambda: day)
        rp = make_rp(quota=100)
        token = AccessToken(
            rp.client_id, frozenset({"sim-swap"}), int(time.time() * 1000) + 1000, int(time.time()) + 600
        )

        def add(n: int, ago: timedelta) -> None:
            log_queries(db, rp.pk, n, asked_at=datetime.now(UTC) - ago)

        add(3, timedelta(hours=1))
        assert runtime.client_for(token).used_today == 3
        # Gone from the table: a reload that counted the whole day would see 0 of them.
        db.execute(ApiQueryBatch.__table__.delete())
        db.commit()
        add(2, timedelta(seconds=5))
        assert runtime.client_for(token).used_today == 5


class TestClientRefresh:
    """A worker's copy of a client is refreshed by one request at a time."""

    def test_one_refresh_at_a_time(self, runtime: CamaraRuntime, make_rp: Any) -> None:
        """While one request reads a stale client again, the others in flight use the copy they have
        instead of each reading the database; the next due refresh happens once the first has finished."""
        rp = make_rp()
        now = time.time()
        token = AccessToken(rp.client_id, frozenset({"sim-swap"}), int(now * 1000) + 1000, int(now) + 600)
        assert runtime.needs_load(token)  # no copy yet
        first = runtime.load_client(token)
        assert runtime.needs_load(token)  # the test settings keep no copy fresh: this request refreshes
        assert not runtime.needs_load(token)  # ... and another one meanwhile uses the copy it has
        assert runtime.cached_client(token) is first
        second = runtime.load_client(token)
        assert second is not first
        assert runtime.needs_load(token)

    def test_refresh_keeps_what_the_worker_counted(self, runtime: CamaraRuntime, make_rp: Any) -> None:
        """Requests admitted on the old copy still count on the new one (bucket and daily count)."""
        rp = make_rp(rps=10, quota=100)
        now = time.time()
        token = AccessToken(rp.client_id, frozenset({"sim-swap"}), int(now * 1000) + 1000, int(now) + 600)
        state = runtime.client_for(token)
        for _ in range(4):
            runtime.admit(state)
        fresh = runtime.client_for(token)
        assert fresh is not state
        assert fresh.used_today == 4
        assert fresh.tokens <= 6.5


class TestBackgroundRefresh:
    """With a cache time set (as in service), a copy due for a refresh answers the check that finds it due
    while the refresh runs in the background: no check waits for it (on SQLite under load the read queued
    behind writers for seconds)."""

    @pytest.fixture
    def cached(self, api: TestClient, runtime: CamaraRuntime, make_rp: Any) -> tuple[str, Rp]:
        runtime.settings = runtime.settings.model_copy(update={"camara_client_cache_seconds": 60.0})
        rp = make_rp()
        token = token_for(api, rp)
        assert _codes(api, token, 1) == [404]  # no copy yet: this check loaded the client
        return token, rp

    def _make_due(self, runtime: CamaraRuntime, rp: Rp) -> None:
        runtime._clients[rp.client_id].loaded_at -= 61.0

    def _settle(self, runtime: CamaraRuntime) -> None:
        deadline = time.monotonic() + 30
        while runtime._refreshes:
            assert time.monotonic() < deadline, "the refresh never ended"
            time.sleep(0.01)

    def test_a_due_copy_answers_while_the_refresh_runs(
        self,
        api: TestClient,
        runtime: CamaraRuntime,
        db: Session,
        cached: tuple[str, Rp],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The client is disabled; the check that finds the copy due is answered from it at once (the
        refresh is held back meanwhile), and once the refresh lands the client is refused."""
        token, rp = cached
        clients.disable_client(db, client_id=rp.client_id)
        db.commit()
        release = threading.Event()
        real_load = runtime._load

        def held_load(client_id: str, previous: Any) -> Any:
            assert release.wait(30)
            return real_load(client_id, previous)

        monkeypatch.setattr(runtime, "_load", held_load)
        self._make_due(runtime, rp)
        assert _codes(api, token, 3) == [404, 404, 404]  # answered while the refresh waits
        assert len(runtime._refreshes) == 1  # one refresh, not one per check
        release.set()
        self._settle(runtime)
        response = api.post(URL, json=BODY, headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHENTICATED"

    def test_a_failed_refresh_is_logged_and_tried_again_a_second_later(
        self,
        api: TestClient,
        runtime: CamaraRuntime,
        cached: tuple[str, Rp],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        token, rp = cached
        calls: list[str] = []

        def broken_load(client_id: str, previous: Any) -> Any:
            calls.append(client_id)
            raise RuntimeError("database unreachable")

        monkeypatch.setattr(runtime, "_load", broken_load)
        self._make_due(runtime, rp)
        assert _codes(api, token, 1) == [404]
        self._settle(runtime)
        assert _codes(api, token, 20) == [404] * 20  # the copy goes on answering
        assert calls == [rp.client_id]  # not a refresh per check: the next one is due in a second
        assert "camara.client_refresh_failed" in capsys.readouterr().err
        runtime._clients[rp.client_id].loaded_at -= 1.0
        assert _codes(api, token, 1) == [404]
        self._settle(runtime)
        assert calls == [rp.client_id, rp.client_id]


class TestClientReadsOnSqlite:
    """On SQLite a worker reads its clients on read-only connections that open no transaction: simkeep's
    sessions take the write lock for every transaction, and a client's read queued behind the writers."""

    def test_a_client_is_read_while_a_writer_holds_the_lock(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        settings = fresh[1]
        made = client_read_scope(settings)
        if made is None:
            pytest.skip("PostgreSQL readers never wait for writers: the app's sessions read clients")
        scope, engine = made
        with fresh_session_factory() as s:
            issued = clients.create_client(s, settings, name="Bank", scopes=["sim-swap:check"])
            s.commit()
        client_id = issued.client.client_id
        runtime = CamaraRuntime(settings, fresh_session_factory, heartbeat=False, read_scope=scope)
        now = time.time()
        token = AccessToken(client_id, frozenset({"sim-swap:check"}), int(now * 1000) + 1000, int(now) + 600)
        writer = sqlite3.connect(str(fresh[0].url.database), isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # a writer holds the lock (a long replacement, an import)
            writer.execute("UPDATE api_clients SET name = 'Renamed' WHERE client_id = ?", (client_id,))
            state = runtime.load_client(token)  # would wait for the lock (and fail) through a session
            assert state.active and state.used_today == 0
            writer.execute("COMMIT")
            with scope() as session, pytest.raises(OperationalError, match="readonly"):
                session.execute(text("DELETE FROM api_clients"))
        finally:
            writer.close()
            engine.dispose()
        with fresh_session_factory() as s:
            assert s.scalar(select(func.count()).select_from(RelyingParty)) == 1


class TestQueryRecording:
    """Every query after authentication is buffered in memory and written by the recorder."""

    def test_queries_are_recorded_after_flush(
        self, api: TestClient, make_rp: Any, runtime: CamaraRuntime, db: Session
    ) -> None:
        """Answers and refusals are recorded with the client, number, answer and status; nothing before."""
        rp = make_rp(["number-recycling:check"], rps=2)
        token = token_for(api, rp)
        api.post(URL, json=BODY, headers=bearer(token))
        api.post(URL, json={"specifiedDate": "2024-01-01"}, headers=bearer(token))
        api.post(URL, json=BODY, headers=bearer(token))
        assert logged(db, rp.pk) == []
        assert runtime.recorder.flush() == 3
        rows = logged(db, rp.pk)
        assert [(r.api, r.msisdn, r.answer, r.status) for r in rows] == [
            ("number-recycling.check", "+8613999999999", "IDENTIFIER_NOT_FOUND", 404),
            ("number-recycling.check", None, "MISSING_IDENTIFIER", 422),
            ("number-recycling.check", None, "TOO_MANY_REQUESTS", 429),
        ]

    def test_answer_is_recorded(
        self, api: TestClient, make_rp: Any, runtime: CamaraRuntime, db: Session, camara_settings: Settings
    ) -> None:
        """A successful query records the answer given."""
        from tests import factories

        line = factories.holder(db, camara_settings).line
        db.commit()
        rp = make_rp()
        api.post(
            URL,
            json={"phoneNumber": line.msisdn, "specifiedDate": "2020-01-01"},
            headers=bearer(token_for(api, rp)),
        )
        runtime.recorder.flush()
        [row] = logged(db, rp.pk)
        assert (row.msisdn, row.answer, row.status) == (line.msisdn, '{"phoneNumberRecycled":true}', 200)

    def test_unauthenticated_calls_are_not_recorded(self, api: TestClient, runtime: CamaraRuntime) -> None:
        """A call without a valid token has no client to record against."""
        api.post(URL, json=BODY)
        assert runtime.recorder.pending() == 0


@pytest.mark.concurrent
def _nothing_to_write() -> Any:
    raise AssertionError("nothing was recorded: nothing to write")


class TestRecorderThread:
    """The background writer on a database with real commits."""

    def test_background_thread_writes_without_being_asked(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Within a few flush intervals the buffered queries are in the log; stop() writes the rest."""
        engine, settings = fresh
        with fresh_session_factory() as session:
            rp = clients.create_client(session, settings, name="Bank", scopes=["sim-swap"]).client
            session.commit()
            pk = rp.id

        recorder = QueryRecorder(fresh_session_factory, interval=0.05, max_buffer=100)
        recorder.start()
        try:
            recorder.record(QueryRecord(pk, "sim-swap", "+8613800000001", "x", 200, time.time_ns() // 1000))
            deadline = time.monotonic() + 5
            count = 0
            while time.monotonic() < deadline and count == 0:
                time.sleep(0.05)
                with fresh_session_factory() as session:
                    count = len(logged(session))
            assert count == 1
        finally:
            recorder.record(QueryRecord(pk, "sim-swap", None, "y", 200, time.time_ns() // 1000))
            recorder.stop()
        with fresh_session_factory() as session:
            assert len(logged(session)) == 2
        del engine

    def test_batch_keeps_every_field_exactly(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """The one-statement batch write keeps order, times to the microsecond, a missing number, non-ASCII
        and quote characters, and cuts an answer at 200 characters."""
        engine, settings = fresh
        with fresh_session_factory() as session:
            pk = clients.create_client(session, settings, name="Bank", scopes=["sim-swap"]).client.id
            session.commit()
        asked = [
            datetime(2026, 2, 28, 23, 59, 59, 999_999, tzinfo=UTC),
            datetime(2024, 2, 29, 0, 0, 0, 1, tzinfo=UTC),
            datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        ]
        answers = ['{"latestSimChange":"2026-01-01T00:00:00Z"}', '号码 "quoted" \\ \'', "x" * 250]
        recorder = QueryRecorder(fresh_session_factory, interval=60, max_buffer=10)
        for i, (when, answer) in enumerate(zip(asked, answers, strict=True)):
            us = (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            recorder.record(
                QueryRecord(pk, "sim-swap.check", None if i == 1 else f"+861380000000{i}", answer, 200, us)
            )
        assert recorder.flush() == 3
        with fresh_session_factory() as session:
            rows = logged(session)  # oldest first
            assert [(r.msisdn, r.answer, r.asked_at) for r in rows] == [
                (None, answers[1], asked[1]),
                ("+8613800000000", answers[0], asked[0]),
                ("+8613800000002", "x" * 200, asked[2]),
            ]
            # One batch per UTC day, each with its bounds and counts.
            batches = session.scalars(select(ApiQueryBatch).order_by(ApiQueryBatch.first_at)).all()
            assert [(b.first_at, b.last_at, b.queries, b.answered) for b in batches] == [
                (when, when, 1, 1) for when in sorted(asked)
            ]
        del engine

    def test_a_flush_is_one_row_per_client_and_day_in_the_order_asked(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Queries of two clients across midnight (UTC): one batch per client and day, each query in it in
        the order asked (ties in the order recorded), and the answered ones counted."""
        engine, settings = fresh
        with fresh_session_factory() as session:
            a = clients.create_client(session, settings, name="A", scopes=["sim-swap"]).client.id
            b = clients.create_client(session, settings, name="B", scopes=["sim-swap"]).client.id
            session.commit()
        midnight = datetime(2026, 12, 1, tzinfo=UTC)
        us = (midnight - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        recorder = QueryRecorder(fresh_session_factory, interval=60, max_buffer=100)
        recorded = [(a, 1, 200), (b, -1, 200), (a, -2, 429), (a, -1, 200), (a, 1, 404), (a, 0, 200)]
        for i, (pk, offset, status) in enumerate(recorded):
            recorder.record(
                QueryRecord(pk, "sim-swap.check", f"+8613800000{i:03d}", "x", status, us + offset)
            )
        assert recorder.flush() == 6
        with fresh_session_factory() as session:
            batches = session.scalars(select(ApiQueryBatch).order_by(ApiQueryBatch.id)).all()
            shape = {(x.client_id, x.first_at.date()): (x.queries, x.answered) for x in batches}
            assert shape == {
                (a, midnight.date()): (3, 3),
                (a, (midnight - timedelta(days=1)).date()): (2, 1),
                (b, (midnight - timedelta(days=1)).date()): (1, 1),
            }
            numbers = [q.msisdn for q in logged(session, a)]
        assert numbers == ["+8613800000002", "+8613800000003", "+8613800000005", "+8613800000000",
                           "+8613800000004"]  # fmt: skip
        del engine

    def test_a_large_flush_is_written_whole_and_in_order(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        engine, settings = fresh
        with fresh_session_factory() as session:
            pk = clients.create_client(session, settings, name="Bank", scopes=["sim-swap"]).client.id
            session.commit()
        recorder = QueryRecorder(fresh_session_factory, interval=60, max_buffer=100)
        start = time.time_ns() // 1000
        recorder = QueryRecorder(fresh_session_factory, interval=60, max_buffer=20_000)
        for i in range(12_000):
            recorder.record(QueryRecord(pk, "sim-swap.check", f"+861380{i:07d}", "x", 200, start + i // 3))
        assert recorder.flush() == 12_000
        with fresh_session_factory() as session:
            numbers = [q.msisdn for q in logged(session)]
        assert numbers == [f"+861380{i:07d}" for i in range(12_000)]
        del engine

    def test_the_heartbeat_goes_at_most_once_a_second_however_often_it_flushes(self) -> None:
        """Flushing every 20 ms, the writer calls its tick (the heartbeat) at once, then once a second."""
        ticks: list[float] = []
        recorder = QueryRecorder(
            _nothing_to_write, interval=0.02, max_buffer=10, on_tick=lambda: ticks.append(time.monotonic())
        )
        started = time.monotonic()
        recorder.start()
        try:
            while time.monotonic() - started < 0.6:
                time.sleep(0.02)
        finally:
            recorder.stop()
        assert len(ticks) == 1
        assert ticks[0] - started < 0.5

    def test_failed_write_keeps_the_queries(self) -> None:
        """When the database refuses the write, the queries stay buffered for the next flush."""

        def broken() -> Any:
            raise RuntimeError("database down")

        recorder = QueryRecorder(broken, interval=60, max_buffer=10)
        recorder.record(QueryRecord(1, "sim-swap", None, "x", 200, time.time_ns() // 1000))
        assert recorder.flush() == 0
        assert recorder.pending() == 1


@pytest.mark.concurrent
class TestSharedRate:
    """A client's rate holds across API workers: each live worker admits its share."""

    @staticmethod
    def _token(client_id: str) -> AccessToken:
        now = time.time()
        return AccessToken(client_id, frozenset({"sim-swap"}), int(now * 1000) + 1000, int(now) + 600)

    @staticmethod
    def _admitted(runtime: CamaraRuntime, token: AccessToken, tries: int) -> int:
        state = runtime.client_for(token)
        admitted = 0
        for _ in range(tries):
            try:
                runtime.admit(state)
            except CamaraError:
                continue
            admitted += 1
        return admitted

    def test_two_workers_admit_the_rate_between_them(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """With two live workers and 10 requests/s, a burst gets 5 through each: 10 in all, not 20."""
        _, settings = fresh
        with fresh_session_factory() as session:
            rp = clients.create_client(
                session, settings, name="Bank", scopes=["sim-swap"], requests_per_second=10
            )
            session.commit()
            client_id = rp.client.client_id
        first = CamaraRuntime(settings, fresh_session_factory)
        second = CamaraRuntime(settings, fresh_session_factory)
        assert first.heartbeat() == 1
        assert second.heartbeat() == 2
        assert first.heartbeat() == 2
        token = self._token(client_id)
        assert self._admitted(first, token, 20) + self._admitted(second, token, 20) == 10

    def test_one_worker_admits_the_whole_rate(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Alone, a worker admits the client's whole rate in a burst."""
        _, settings = fresh
        with fresh_session_factory() as session:
            rp = clients.create_client(
                session, settings, name="Bank", scopes=["sim-swap"], requests_per_second=10
            )
            session.commit()
            client_id = rp.client.client_id
        only = CamaraRuntime(settings, fresh_session_factory)
        assert only.heartbeat() == 1
        assert self._admitted(only, self._token(client_id), 20) == 10

    def test_silent_workers_stop_counting(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """A worker not heard from for a few seconds no longer takes a share; after an hour its row goes."""
        _, settings = fresh
        now = datetime.now(UTC)
        with fresh_session_factory() as session:
            session.add_all(
                [
                    CamaraWorker(worker_id="quiet", seen_at=now - timedelta(seconds=10)),
                    CamaraWorker(worker_id="gone", seen_at=now - timedelta(hours=2)),
                ]
            )
            session.commit()
        runtime = CamaraRuntime(settings, fresh_session_factory)
        assert runtime.heartbeat(now=now) == 1
        with fresh_session_factory() as session:
            assert set(session.scalars(select(CamaraWorker.worker_id))) == {"quiet", runtime.worker_id}

    def test_writer_thread_beats(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """The background writer records the worker's heartbeat without being asked."""
        _, settings = fresh
        runtime = CamaraRuntime(
            settings.model_copy(update={"camara_query_flush_seconds": 0.05}), fresh_session_factory
        )
        runtime.recorder.start()
        try:
            deadline = time.monotonic() + 5
            seen: list[str] = []
            while time.monotonic() < deadline and not seen:
                time.sleep(0.05)
                with fresh_session_factory() as session:
                    seen = list(session.scalars(select(CamaraWorker.worker_id)))
            assert seen == [runtime.worker_id]
        finally:
            runtime.recorder.stop()
