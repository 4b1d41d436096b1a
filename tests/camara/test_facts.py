"""Each API worker's copy of the SIM Swap facts (simkeep.camara.facts) and the change feed keeping it fresh.

Every test runs on SQLite and PostgreSQL with real commits: the copy must always say what the database's
own lookup (``repository.swap_facts``) says once a poll has run, whoever changed the line and however.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.orm import Session

from simkeep.camara import clients, operations, repository
from simkeep.camara import facts as facts_module
from simkeep.camara.auth import issue_token
from simkeep.camara.facts import FactsCache, key_of, pack, unpack
from simkeep.camara.reader import facts_cache_for, reader_for
from simkeep.camara.runtime import CamaraRuntime
from simkeep.config import Settings
from simkeep.models import CamaraChange, Line, LineStatus, SimChange, SimChangeChannel
from tests import factories


@pytest.fixture
def cache(fresh: tuple[Engine, Settings]) -> Iterator[FactsCache]:
    """A cache on the test's private database (not started: the tests load and poll it themselves)."""
    made = facts_cache_for(fresh[1])
    try:
        yield made
    finally:
        made.stop()
        made.engine.dispose()


@pytest.fixture(params=["thread", "loop"])
def poll(request: pytest.FixtureRequest, cache: FactsCache) -> Iterator[Callable[[], int]]:
    """One poll of ``cache`` as its feed's thread runs it (:meth:`FactsCache.poll`) or as a worker's event
    loop runs it (:meth:`FactsCache.apoll`, on PostgreSQL through its async connection, kept between
    polls on one loop as a worker keeps it)."""
    if request.param == "thread":
        yield cache.poll
        return
    loop = asyncio.new_event_loop()
    try:
        yield lambda: loop.run_until_complete(cache.apoll())
    finally:
        if cache._aconnection is not None:
            loop.run_until_complete(cache._aconnection.close())
        loop.close()


def _line(session_factory: Callable[[], Session], settings: Settings) -> tuple[int, str]:
    """A committed holder's line: (id, msisdn)."""
    with session_factory() as s:
        line = factories.holder(s, settings).line
        s.commit()
        return line.id, line.msisdn


def _truth(session_factory: Callable[[], Session], msisdn: str) -> repository.SwapFacts | None:
    with session_factory() as s:
        return repository.swap_facts(s, msisdn)


def _change(session_factory: Callable[[], Session], line_id: int, when: datetime) -> None:
    """A SIM change of the line (the new SIM is the line's own current one: only the time matters here)."""
    with session_factory() as s:
        line = s.get(Line, line_id)
        assert line is not None
        s.add(
            SimChange(
                line_id=line_id,
                old_sim_id=None,
                new_sim_id=line.sim_id,
                changed_at=when,
                channel=SimChangeChannel.STORE,
            )
        )
        s.commit()


def _later(*, hours: int) -> datetime:
    """A time after every SIM change the factories make (they change SIMs now)."""
    return datetime.now(UTC).replace(microsecond=654321) + timedelta(hours=hours)


def _feed_rows(session_factory: Callable[[], Session]) -> int:
    with session_factory() as s:
        return int(s.scalar(select(func.count()).select_from(CamaraChange)) or 0)


_US = timedelta(microseconds=1)


class TestPacking:
    """The packed form of a line's facts gives back exactly what was packed."""

    def test_round_trip_to_the_microsecond(self) -> None:
        rng = random.Random(7)
        for _ in range(2000):
            activated = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**15))
            changed = (
                None if rng.random() < 0.3 else activated + timedelta(microseconds=rng.randrange(10**13))
            )
            status = rng.choice([s.value for s in LineStatus])
            assert unpack(pack(status, activated, changed)) == (status, activated, changed)

    def test_sqlite_text_and_naive_times_are_utc(self) -> None:
        packed = pack("active", "2024-02-29 23:59:59.000001", "2026-11-30 12:00:00")
        assert unpack(packed) == (
            "active",
            datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC),
            datetime(2026, 11, 30, 12, tzinfo=UTC),
        )

    def test_what_does_not_fit_is_kept_as_it_is(self) -> None:
        """A status simkeep does not write, or a time before 1970, is kept unpacked (and still answered)."""
        old = datetime(1969, 12, 31, tzinfo=UTC)
        assert unpack(pack("frozen", old, None)) == ("frozen", old, None)
        assert unpack(pack("active", old, None)) == ("active", old, None)

    def test_unknown_and_known_numbers_cost_the_same_work(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        """A known and an unknown number each take one dict lookup and one unpacking (privacy of
        existence: the answer's time does not tell whether the number is served)."""
        _, msisdn = _line(fresh_session_factory, fresh[1])
        cache.load()
        unpacked: list[object] = []
        real = facts_module.unpack

        def counting(value: object) -> object:
            unpacked.append(value)
            return real(value)  # type: ignore[arg-type]

        monkeypatch.setattr(facts_module, "unpack", counting)
        assert cache.get(msisdn) is not None
        assert cache.get("+8613999999999") is None
        assert len(unpacked) == 2
        assert all(isinstance(value, int) for value in unpacked)

    def test_latest_us_agrees_with_the_datetimes(self, cache: FactsCache) -> None:
        """The check's packed read (microseconds, no datetimes) gives the last change, else the activation,
        and None for a recycled or unknown number, for facts packed or kept unpacked."""
        rng = random.Random(11)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        values: dict[int | str, int | repository.SwapFacts] = {}
        expected: dict[str, int | None] = {}
        for i in range(500):
            number = f"+86138{i:08d}"
            activated = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**15))
            changed = None if i % 3 == 0 else activated + timedelta(microseconds=rng.randrange(10**13))
            status = rng.choice([s.value for s in LineStatus])
            values[key_of(number)] = pack(status, activated, changed)
            live = status != LineStatus.RECYCLED.value
            expected[number] = ((changed or activated) - epoch) // _US if live else None
        old = datetime(1969, 6, 1, tzinfo=UTC)  # before 1970: kept unpacked
        values[key_of("+8613900000001")] = pack("frozen", old, None)
        values[key_of("+8613900000002")] = pack(LineStatus.RECYCLED.value, old, None)
        cache._facts = values  # the copy as a load would leave it
        for number, want in expected.items():
            assert cache.latest_us(number) == want
        assert cache.latest_us("+8613900000001") == (old - epoch) // _US
        assert cache.latest_us("+8613900000002") is None
        assert cache.latest_us("+8613999999999") is None  # unknown

    def test_unknown_number_reads_as_much_as_a_known_one(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        """latest_us: one key, one dict lookup, the same arithmetic, known or not (privacy of existence)."""
        _, msisdn = _line(fresh_session_factory, fresh[1])
        cache.load()
        keyed: list[str] = []
        real = facts_module.key_of

        def counting(value: str) -> int | str:
            keyed.append(value)
            return real(value)

        monkeypatch.setattr(facts_module, "key_of", counting)
        assert cache.latest_us(msisdn) is not None
        assert cache.latest_us("+8613999999999") is None
        assert keyed == [msisdn, "+8613999999999"]

    def test_keys_are_exact(self) -> None:
        """E.164 numbers become ints; anything else stays a string, so no two numbers share a key."""
        assert key_of("+8613800000001") == 8613800000001
        assert key_of("8613800000001") == "8613800000001"
        assert key_of("+08613800000001") == "+08613800000001"
        assert key_of("+86138０００") == "+86138０００"  # full-width digits are not ASCII digits
        assert key_of("") == ""


class TestLoadAndPoll:
    """The copy says what the database says, after a load and after every kind of change and a poll."""

    def test_load_matches_the_database(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        settings = fresh[1]
        made = [_line(fresh_session_factory, settings) for _ in range(4)]
        _change(fresh_session_factory, made[1][0], datetime(2026, 11, 1, 8, 30, 0, 123456, tzinfo=UTC))
        with fresh_session_factory() as s:
            s.execute(update(Line).where(Line.id == made[2][0]).values(status=LineStatus.SUSPENDED))
            s.execute(update(Line).where(Line.id == made[3][0]).values(status=LineStatus.RECYCLED))
            s.commit()
        cache.load()
        assert cache.ready
        assert len(cache) == 4
        for _, msisdn in made:
            assert cache.get(msisdn) == _truth(fresh_session_factory, msisdn) is not None
        assert cache.get("+8613999999999") is None

    def test_every_kind_of_change_reaches_the_copy(
        self,
        cache: FactsCache,
        poll: Callable[[], int],
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
    ) -> None:
        """New line, SIM change (new, edited, removed), status, activation and number changes."""
        settings = fresh[1]
        first_id, first = _line(fresh_session_factory, settings)
        cache.load()
        before = cache.get(first)

        second_id, second = _line(fresh_session_factory, settings)  # a new line
        assert cache.get(second) is None
        assert poll() == 1
        assert cache.get(second) == _truth(fresh_session_factory, second) is not None

        when = _later(hours=1)
        _change(fresh_session_factory, first_id, when)  # a SIM change
        assert cache.get(first) == before
        poll()
        facts = cache.get(first)
        assert facts is not None and facts[2] == when
        with fresh_session_factory() as s:  # the change corrected, then removed
            s.execute(
                update(SimChange)
                .where(SimChange.line_id == first_id)
                .values(changed_at=when.replace(hour=10))
            )
            s.commit()
        poll()
        assert cache.get(first) == _truth(fresh_session_factory, first)
        with fresh_session_factory() as s:
            s.execute(SimChange.__table__.delete().where(SimChange.line_id == first_id))
            s.commit()
        poll()
        assert cache.get(first) == _truth(fresh_session_factory, first)
        assert cache.get(first)[2] is None  # type: ignore[index]

        with fresh_session_factory() as s:  # suspended, then re-activated at another time
            s.execute(update(Line).where(Line.id == second_id).values(status=LineStatus.SUSPENDED))
            s.commit()
        poll()
        assert cache.get(second) == _truth(fresh_session_factory, second)
        assert cache.get(second)[0] == "suspended"  # type: ignore[index]
        with fresh_session_factory() as s:
            s.execute(
                update(Line)
                .where(Line.id == second_id)
                .values(status=LineStatus.ACTIVE, activated_at=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
            )
            s.commit()
        poll()
        assert cache.get(second) == _truth(fresh_session_factory, second)
        assert cache.get(second)[1] == datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)  # type: ignore[index]

        with fresh_session_factory() as s:  # the number moves: the old one is unknown, the new one known
            s.execute(update(Line).where(Line.id == second_id).values(msisdn="+8613700000077"))
            s.commit()
        poll()
        assert cache.get(second) is None
        assert cache.get("+8613700000077") == _truth(fresh_session_factory, "+8613700000077") is not None

    def test_other_line_updates_write_nothing_to_the_feed(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Activity updates (last_activity_at) and rewriting a fact with the same value leave the feed
        alone: the activity import and the daily sweep over millions of lines pay nothing for it."""
        settings = fresh[1]
        line_id, msisdn = _line(fresh_session_factory, settings)
        rows = _feed_rows(fresh_session_factory)
        with fresh_session_factory() as s:
            line = s.get(Line, line_id)
            assert line is not None
            s.execute(
                update(Line)
                .where(Line.id == line_id)
                .values(
                    last_activity_at=datetime.now(UTC),
                    updated_at=datetime.now(UTC),
                    status=line.status,
                    msisdn=msisdn,
                )
            )
            s.commit()
        assert _feed_rows(fresh_session_factory) == rows

    def test_a_poll_with_nothing_new_rereads_nothing(
        self,
        cache: FactsCache,
        poll: Callable[[], int],
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
    ) -> None:
        _line(fresh_session_factory, fresh[1])
        cache.load()
        assert poll() == 0
        assert poll() == 0

    def test_a_rolled_back_change_never_shows(
        self,
        cache: FactsCache,
        poll: Callable[[], int],
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
    ) -> None:
        line_id, msisdn = _line(fresh_session_factory, fresh[1])
        cache.load()
        before = cache.get(msisdn)
        with fresh_session_factory() as s:
            s.execute(update(Line).where(Line.id == line_id).values(status=LineStatus.RECYCLED))
            s.rollback()
        poll()
        assert cache.get(msisdn) == before == _truth(fresh_session_factory, msisdn)

    def test_a_transaction_committing_after_a_later_one_is_not_missed(
        self,
        cache: FactsCache,
        poll: Callable[[], int],
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
    ) -> None:
        """A writes its feed row first but commits last; a poll runs between B's and A's commits. On
        PostgreSQL A's row has the smaller id; the next poll still applies it. (On SQLite the second writer
        waits for the first: the same sequence runs one after the other.)"""
        settings = fresh[1]
        a_id, a_number = _line(fresh_session_factory, settings)
        b_id, b_number = _line(fresh_session_factory, settings)
        cache.load()
        when = _later(hours=2)
        if fresh[0].dialect.name == "postgresql":
            slow = fresh_session_factory()
            try:
                line = slow.get(Line, a_id)
                assert line is not None
                slow.add(
                    SimChange(
                        line_id=a_id, new_sim_id=line.sim_id, changed_at=when, channel=SimChangeChannel.STORE
                    )
                )
                slow.flush()  # A's feed row is written (smaller id), not committed
                _change(fresh_session_factory, b_id, when)  # B commits
                poll()
                assert cache.get(b_number)[2] == when  # type: ignore[index]
                assert cache.get(a_number)[2] != when  # type: ignore[index]
                slow.commit()
            finally:
                slow.close()
        else:
            _change(fresh_session_factory, b_id, when)
            poll()
            _change(fresh_session_factory, a_id, when)
        poll()
        assert cache.get(a_number)[2] == when  # type: ignore[index]
        assert cache.get(b_number)[2] == when  # type: ignore[index]

    def test_a_transaction_left_open_does_not_make_polls_read_more(
        self,
        cache: FactsCache,
        poll: Callable[[], int],
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
    ) -> None:
        """A transaction left open (holding back PostgreSQL's oldest running transaction) does not make every
        poll read again what was applied: the second poll after three changes reads no row; the open
        transaction's own change still shows once it commits."""
        settings = fresh[1]
        held_id, held_number = _line(fresh_session_factory, settings)
        others = [_line(fresh_session_factory, settings) for _ in range(3)]
        cache.load()
        when = _later(hours=6)
        held = fresh_session_factory()
        try:
            if fresh[0].dialect.name == "postgresql":  # SQLite allows one writer: nothing to hold open
                held.execute(update(Line).where(Line.id == held_id).values(status=LineStatus.SUSPENDED))
                held.flush()
            for line_id, _ in others:
                _change(fresh_session_factory, line_id, when)
            poll()
            assert cache.fetched == 3
            assert poll() == 0
            assert cache.fetched == 0
            held.commit()
        finally:
            held.close()
        poll()
        assert cache.get(held_number) == _truth(fresh_session_factory, held_number)
        assert all(cache.get(number)[2] == when for _, number in others)  # type: ignore[index]

    def test_changes_while_loading_are_applied(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        """The feed position is taken before the lines are read, so a change committed during the load is
        applied by the poll that ends it."""
        settings = fresh[1]
        line_id, msisdn = _line(fresh_session_factory, settings)
        when = _later(hours=3)
        real_position = FactsCache._position

        def position_then_change(self: FactsCache, conn: object) -> tuple[int, int]:
            found = real_position(self, conn)
            done = threading.Event()

            def commit_change() -> None:  # another connection, while the load goes on
                _change(fresh_session_factory, line_id, when)
                done.set()

            threading.Thread(target=commit_change).start()
            assert done.wait(30)
            return found

        monkeypatch.setattr(FactsCache, "_position", position_then_change)
        seen_ready_before_poll: list[bool] = []
        real_poll = FactsCache.poll

        def poll_after_a_long_load(self: FactsCache) -> int:
            self._fresh_at -= facts_module.STALE_AFTER  # as if the load had taken that long
            seen_ready_before_poll.append(self.ready)
            return real_poll(self)

        monkeypatch.setattr(FactsCache, "poll", poll_after_a_long_load)
        cache.load()
        assert seen_ready_before_poll == [False]  # not used until the poll that applies the change
        assert cache.ready
        assert cache.get(msisdn)[2] == when  # type: ignore[index]


class TestReload:
    """A feed row naming no number but ``*`` (a bulk load without a row per line) makes the copy load anew."""

    def test_a_reload_row_drops_the_copy_and_the_thread_loads_every_line(
        self, cache: FactsCache, poll: Callable[[], int], fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
    ) -> None:  # fmt: skip
        settings = fresh[1]
        _line(fresh_session_factory, settings)
        cache.load()
        _, loaded_later = _line(fresh_session_factory, settings)
        with fresh_session_factory() as s:  # as a first load leaves the feed: no row for the new line
            s.execute(text("DELETE FROM camara_changes WHERE msisdn = :m"), {"m": loaded_later})
            reload = (
                "INSERT INTO camara_changes (msisdn, xid) VALUES (:m, pg_current_xact_id()::text::bigint)"
                if s.get_bind().dialect.name == "postgresql"
                else "INSERT INTO camara_changes (msisdn) VALUES (:m)"
            )
            s.execute(text(reload), {"m": facts_module.RELOAD})
            s.commit()
        assert poll() == 0
        assert (cache.ready, cache.state) == (False, "loading")  # checks read the database meanwhile
        cache._tick()  # the feed's thread, at its next turn
        assert cache.ready
        assert cache.get(loaded_later) == _truth(fresh_session_factory, loaded_later) is not None
        assert poll() == 0  # the reload row is behind the new copy's position


class TestReadiness:
    """The copy answers only while it is fresh; otherwise checks read the database."""

    def test_not_ready_before_the_load_or_when_stale(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        _line(fresh_session_factory, fresh[1])
        assert (cache.ready, cache.state) == (False, "loading")
        cache.load()
        assert (cache.ready, cache.state) == (True, "ready")
        cache._fresh_at -= facts_module.STALE_AFTER  # no poll succeeded for STALE_AFTER
        assert (cache.ready, cache.state) == (False, "stale")
        cache.poll()
        assert (cache.ready, cache.state) == (True, "ready")

    def test_the_runtime_reads_the_database_while_the_copy_is_not_ready(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        settings = fresh[1]
        line_id, msisdn = _line(fresh_session_factory, settings)
        runtime = CamaraRuntime(settings, fresh_session_factory, heartbeat=False)
        runtime.facts = cache
        assert runtime.inline_lookup() is None  # PostgreSQL or not: no reader, no copy yet
        cache.load()
        lookup = runtime.inline_lookup()
        assert lookup is not None and lookup(msisdn) == _truth(fresh_session_factory, msisdn)
        _change(fresh_session_factory, line_id, _later(hours=4))
        cache._fresh_at -= facts_module.STALE_AFTER
        assert runtime.inline_lookup() is None  # stale: the caller reads the database

    def test_too_many_lines_turns_the_copy_off(
        self, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        settings = fresh[1].model_copy(update={"camara_facts_cache_max_lines": 1})
        _line(fresh_session_factory, settings)
        _line(fresh_session_factory, settings)
        made = facts_cache_for(settings)
        try:
            made.load()
            assert (made.ready, made.state) == (False, "off")
            assert made.disabled is not None and "2 lines" in made.disabled
        finally:
            made.engine.dispose()

    def test_the_thread_loads_then_polls(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Started, the cache loads and then follows the feed on its own (asserted on outcome, not time)."""
        settings = fresh[1]
        line_id, msisdn = _line(fresh_session_factory, settings)
        cache.poll_seconds = 0.01
        cache.start()
        _wait(lambda: cache.ready)
        when = _later(hours=5)
        _change(fresh_session_factory, line_id, when)
        _wait(lambda: (cache.get(msisdn) or ("", None, None))[2] == when)


class TestPruning:
    def test_old_feed_rows_are_pruned_but_the_newest(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:  # fmt: skip
        """Rows older than the retention go, oldest first and in several batches; recent ones stay; the
        newest row always stays (it keeps ids growing)."""
        monkeypatch.setattr(facts_module, "_OLDEST", text(str(facts_module._OLDEST).replace("1000", "2")))
        for _ in range(5):
            _line(fresh_session_factory, fresh[1])
        rows = _feed_rows(fresh_session_factory)
        assert rows >= 5
        assert cache.prune() == 0
        later = datetime.now(UTC) + facts_module.RETENTION + timedelta(minutes=1)
        assert cache.prune(now=later) == rows - 1
        assert _feed_rows(fresh_session_factory) == 1
        assert cache.prune(now=later) == 0

    def test_ids_are_not_reused_after_pruning(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """After pruning everything it may, the next change still gets a larger id than any seen, so a poll
        after the last id seen finds it."""
        settings = fresh[1]
        _line(fresh_session_factory, settings)
        _line(fresh_session_factory, settings)
        cache.load()
        with fresh_session_factory() as s:
            newest = s.scalar(select(func.max(CamaraChange.id)))
        cache.prune(now=datetime.now(UTC) + facts_module.RETENTION + timedelta(minutes=1))
        _, msisdn = _line(fresh_session_factory, settings)
        with fresh_session_factory() as s:
            assert s.scalar(select(func.max(CamaraChange.id))) > newest  # type: ignore[operator]
        assert cache.poll() == 1
        assert cache.get(msisdn) is not None


def _wait(condition: Callable[[], bool]) -> None:
    """Until the condition holds (a generous bound only against a hang)."""
    import time

    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


async def _until(condition: Callable[[], bool]) -> None:
    """Until the condition holds, turning the event loop (a generous bound only against a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not condition():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class TestLoopPolls:
    """In a worker the event loop polls the feed (:meth:`FactsCache.run_polls`) and the thread only loads and
    prunes: under load a thread waited for the interpreter lock at each statement, its polls came late, the
    copy went stale and every check read the database."""

    def test_the_loop_follows_the_feed_and_the_thread_no_longer_polls(
        self,
        cache: FactsCache,
        fresh: tuple[Engine, Settings],
        fresh_session_factory: Callable[[], Session],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        line_id, msisdn = _line(fresh_session_factory, fresh[1])
        thread_polls: list[str] = []
        real_poll = FactsCache.poll

        def counted(self: FactsCache) -> int:
            thread_polls.append(threading.current_thread().name)
            return real_poll(self)

        monkeypatch.setattr(FactsCache, "poll", counted)
        cache.poll_seconds = 0.01
        when = _later(hours=6)

        async def scenario() -> None:
            task = asyncio.create_task(cache.run_polls())
            await asyncio.sleep(0)
            cache.start()  # the thread loads (and polls once at the end of the load)
            await _until(lambda: cache.ready)
            await asyncio.to_thread(_change, fresh_session_factory, line_id, when)
            await _until(lambda: (cache.get(msisdn) or ("", None, None))[2] == when)
            await asyncio.sleep(0.1)  # the thread ticks several times meanwhile
            assert thread_polls == ["camara-facts"]  # the load's own poll; the loop did the rest
            await _stop(task)

        asyncio.run(scenario())
        assert cache._aconnection is None and cache._next_poll is None  # closed with the task
        assert not cache._loop_polls  # the thread polls again from now on

    def test_a_load_in_progress_holds_the_loop_polls_back(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """A (re)load in the thread and a poll on the loop never overlap: the loop skips its turns while
        the load holds the guard, and follows the feed again once it is done."""
        line_id, msisdn = _line(fresh_session_factory, fresh[1])
        cache.load()
        cache.poll_seconds = 0.01
        when = _later(hours=7)

        async def scenario() -> None:
            cache._guard.acquire()  # as a load in the thread holds it
            task = asyncio.create_task(cache.run_polls())
            await asyncio.to_thread(_change, fresh_session_factory, line_id, when)
            await asyncio.sleep(0.2)  # many turns of the poller
            assert cache.get(msisdn)[2] != when  # type: ignore[index]
            cache._guard.release()
            await _until(lambda: (cache.get(msisdn) or ("", None, None))[2] == when)
            await _stop(task)

        asyncio.run(scenario())

    def test_a_check_waits_for_a_late_poll_instead_of_reading_the_database(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """A stale copy with the loop polling: :meth:`wait_fresh` waits for the next poll and the copy is
        ready again; without a poller (or before the load) it answers False at once, and a poll that fails
        wakes the waiting checks with False (they then read the database)."""
        _line(fresh_session_factory, fresh[1])

        async def scenario() -> None:
            assert await cache.wait_fresh(30) is False  # not loaded
            cache.load()
            cache._fresh_at -= facts_module.STALE_AFTER
            assert await cache.wait_fresh(30) is False  # loaded, stale, nobody polling on this loop
            cache.poll_seconds = 0.05
            task = asyncio.create_task(cache.run_polls())
            await asyncio.sleep(0)
            cache._fresh_at -= facts_module.STALE_AFTER
            assert not cache.ready
            assert await cache.wait_fresh(30) is True
            assert cache.ready

            async def failing() -> int:
                raise RuntimeError("the database went away")

            cache.apoll = failing  # type: ignore[method-assign]
            cache._fresh_at -= facts_module.STALE_AFTER
            started = asyncio.get_running_loop().time()
            assert await cache.wait_fresh(30) is False
            assert asyncio.get_running_loop().time() - started < 30  # woken by the failed poll
            await _stop(task)

        asyncio.run(scenario())

    def test_the_runtime_answers_from_the_copy_after_a_late_poll(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """Through :func:`simkeep.camara.operations.respond`: a check arriving while the copy is stale waits
        for the loop's poll and is answered from the copy; the database reader is not asked."""
        settings = fresh[1]
        line_id, msisdn = _line(fresh_session_factory, settings)
        with fresh_session_factory() as s:
            issued = clients.create_client(s, settings, name="Bank", scopes=["sim-swap:check"])
            s.commit()
        token, _ = issue_token(settings, client_id=issued.client.client_id, scopes=["sim-swap:check"])
        runtime = CamaraRuntime(settings, fresh_session_factory, heartbeat=False)
        reader = reader_for(settings)
        asked: list[str] = []
        real_read = reader.aswap_facts

        async def counted(number: str) -> repository.SwapFacts | None:
            asked.append(number)
            return await real_read(number)

        reader.aswap_facts = counted  # type: ignore[method-assign]
        runtime.reader, runtime.facts = reader, cache
        cache.load()
        cache.poll_seconds = 0.05
        when = _later(hours=1) - timedelta(hours=2)  # an hour ago
        _change(fresh_session_factory, line_id, when)
        body = json.dumps({"phoneNumber": msisdn, "maxAge": 24}).encode()

        async def scenario() -> operations.Reply:
            task = asyncio.create_task(cache.run_polls())
            await asyncio.sleep(0)
            cache._fresh_at -= facts_module.STALE_AFTER
            try:
                return await operations.respond(
                    runtime,
                    runtime.operations[operations.SIM_SWAP_CHECK],
                    authorization=f"Bearer {token}",
                    correlator_header=None,
                    body=body,
                )
            finally:
                await _stop(task)
                await reader.aclose()

        reply = asyncio.run(scenario())
        assert (reply.status, json.loads(reply.body)) == (200, {"swapped": True})
        if cache.dialect == "postgresql":  # SQLite reads its file inline when stale (no waiting needed)
            assert asked == []

    def test_a_broken_connection_is_replaced(
        self, cache: FactsCache, fresh: tuple[Engine, Settings], fresh_session_factory: Callable[[], Session]
    ) -> None:
        """PostgreSQL: the loop's connection dropped by the server fails one poll (logged; the copy goes
        stale meanwhile) and the next poll opens a new one and catches up."""
        if cache.dialect != "postgresql":
            pytest.skip("SQLite polls its local file through the engine")
        line_id, msisdn = _line(fresh_session_factory, fresh[1])
        cache.load()
        when = _later(hours=8)

        async def scenario() -> None:
            await cache.apoll()
            connection = cache._aconnection
            assert connection is not None
            with fresh[0].connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": connection.info.backend_pid})
            _change(fresh_session_factory, line_id, when)
            with pytest.raises(psycopg.OperationalError):
                await cache.apoll()
            assert cache._aconnection is None
            assert cache.get(msisdn)[2] != when  # type: ignore[index]
            await cache.apoll()
            assert cache.get(msisdn)[2] == when  # type: ignore[index]
            assert cache._aconnection is not None
            await cache._aconnection.close()

        asyncio.run(scenario())
