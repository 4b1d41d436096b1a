"""``simkeep clients queries --number``: who asked about a number, when (a holder's privacy request)."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from simkeep.camara.repository import insert_queries, queries_about
from simkeep.cli_support import reading_session
from simkeep.config import Settings
from simkeep.db.engine import make_engine
from simkeep.models import RelyingParty
from tests.camara.conftest import Cli, logged

pytestmark = pytest.mark.concurrent

NUMBER = "+8613800138000"
OTHER = "+8613900139000"
#: The test period: November 2026 (UTC).
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)
PERIOD = ("--since", "2026-11-01", "--until", "2026-12-01")
CHECK = "sim-swap/check"
SWAPPED = '{"swapped":false}'


class Log:
    """Relying parties and their recorded queries, committed to the private database."""

    def __init__(self, factory: Callable[[], Session]) -> None:
        self.factory = factory
        self.clients: dict[str, RelyingParty] = {}

    def client(self, name: str) -> RelyingParty:
        """A relying party named ``name`` (client id ``rp_<name>``)."""
        with self.factory() as session:
            row = RelyingParty(
                client_id=f"rp_{name.lower().replace(' ', '_')}",
                name=name,
                secret_hash="0" * 64,
                scopes="sim-swap:check",
            )
            session.add(row)
            session.commit()
        self.clients[name] = row
        return row

    def asked(
        self,
        name: str,
        msisdn: str | None,
        at: datetime,
        *,
        api: str = CHECK,
        answer: str = SWAPPED,
        status: int = 200,
    ) -> None:
        """Record that client ``name`` asked about ``msisdn`` at ``at``, as the query writer does."""
        asked_us = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        with self.factory() as session:
            insert_queries(session, [(self.clients[name].id, api, msisdn, answer, status, asked_us)])
            session.commit()

    def snapshot(self) -> list[tuple[Any, ...]]:
        """Every client and every query, to show that a command changed nothing."""
        with self.factory() as session:
            clients = session.execute(select(RelyingParty.id, RelyingParty.client_id, RelyingParty.name))
            rows = [(q.batch_id, q.client_id, q.msisdn, q.asked_at) for q in logged(session)]
            return [*map(tuple, clients), *rows]


@pytest.fixture
def log(fresh_session_factory: Callable[[], Session]) -> Log:
    """Two banks and an app that asked nothing; no query recorded yet."""
    recorded = Log(fresh_session_factory)
    for name in ("Bank A", "Bank B", "Quiet App"):
        recorded.client(name)
    return recorded


def _row(
    client: str, at: datetime, *, api: str = CHECK, answer: str = SWAPPED, status: int = 200
) -> dict[str, Any]:
    """A query as ``--json`` lists it."""
    return {
        "client_id": f"rp_{client.lower().replace(' ', '_')}",
        "client_name": client,
        "api": api,
        "answer": answer,
        "status": status,
        "asked_at": at.isoformat(),
    }


class TestQueries:
    """``simkeep clients queries --number N [--since] [--until] [--limit] [--json]``."""

    def test_lists_every_clients_queries_about_the_number_in_the_period_oldest_first(
        self, cli: Cli, log: Log
    ) -> None:
        """The queries of both banks about the number in the period are listed oldest first with the
        client's public id and name; queries about another number, or outside the period, are not."""
        t1 = datetime(2026, 11, 3, 9, 15, 0, 123456, tzinfo=UTC)
        t2 = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
        t3 = datetime(2026, 11, 21, 7, 30, tzinfo=UTC)
        log.asked("Bank B", NUMBER, t2, api="sim-swap/retrieve-date", answer='{"latestSimChange":null}')
        log.asked("Bank A", NUMBER, t1)
        log.asked("Bank A", NUMBER, t3, answer="TOO_MANY_REQUESTS", status=429)
        log.asked("Bank A", OTHER, t1 + timedelta(hours=1))
        log.asked("Bank B", OTHER, t2)
        log.asked("Bank B", None, t2)  # a refusal before the number was known
        log.asked("Bank A", NUMBER, SINCE - timedelta(days=1))
        log.asked("Bank B", NUMBER, UNTIL + timedelta(days=1))

        assert cli.json("queries", "--number", NUMBER, *PERIOD) == [
            _row("Bank A", t1),
            _row("Bank B", t2, api="sim-swap/retrieve-date", answer='{"latestSimChange":null}'),
            _row("Bank A", t3, answer="TOO_MANY_REQUESTS", status=429),
        ]
        assert cli.json("queries", "--number", OTHER, *PERIOD) == [
            _row("Bank A", t1 + timedelta(hours=1)),
            _row("Bank B", t2),
        ]

    def test_the_number_may_be_written_with_spaces_and_dashes(self, cli: Cli, log: Log) -> None:
        """``+86 138-0013-8000`` is the number ``+8613800138000``."""
        at = datetime(2026, 11, 5, tzinfo=UTC)
        log.asked("Bank A", NUMBER, at)
        assert cli.json("queries", "--number", "+86 138-0013-8000", *PERIOD) == [_row("Bank A", at)]

    def test_since_is_included_and_until_excluded(self, cli: Cli, log: Log) -> None:
        """A query at ``--since`` is listed, one at ``--until`` is not, one a microsecond before it is."""
        last = UNTIL - timedelta(microseconds=1)
        for at in (SINCE - timedelta(microseconds=1), SINCE, last, UNTIL):
            log.asked("Bank A", NUMBER, at)
        assert cli.json("queries", "--number", NUMBER, *PERIOD) == [
            _row("Bank A", SINCE),
            _row("Bank A", last),
        ]

    def test_dates_are_utc_midnights_and_times_may_name_their_zone(self, cli: Cli, log: Log) -> None:
        """``--since 2026-11-02`` is midnight UTC; ``2026-11-02T08:00:00+08:00`` is the same moment, and a
        time without a zone is taken as UTC."""
        before, inside = datetime(2026, 11, 1, 23, 59, tzinfo=UTC), datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
        log.asked("Bank A", NUMBER, before)
        log.asked("Bank A", NUMBER, inside)
        for since in ("2026-11-02", "2026-11-02T08:00:00+08:00", "2026-11-02T00:00:00Z", "2026-11-02T00:00"):
            listed = cli.json("queries", "--number", NUMBER, "--since", since, "--until", "2026-11-03")
            assert listed == [_row("Bank A", inside)], since

    def test_the_default_period_is_the_last_30_days(self, cli: Cli, log: Log) -> None:
        """Without --since and --until, the queries of the last 30 days are listed, older ones not."""
        now = datetime.now(UTC)
        recent, old = now - timedelta(days=29, hours=23), now - timedelta(days=30, hours=1)
        log.asked("Bank A", NUMBER, old)
        log.asked("Bank B", NUMBER, recent)
        assert cli.json("queries", "--number", NUMBER) == [_row("Bank B", recent)]

    def test_until_alone_reads_the_30_days_before_it(self, cli: Cli, log: Log) -> None:
        """``--until`` without ``--since`` reads the 30 days before it."""
        log.asked("Bank A", NUMBER, UNTIL - timedelta(days=30, microseconds=1))
        log.asked("Bank A", NUMBER, UNTIL - timedelta(days=30))
        assert cli.json("queries", "--number", NUMBER, "--until", "2026-12-01") == [
            _row("Bank A", UNTIL - timedelta(days=30))
        ]

    def test_a_period_of_366_days_is_read(self, cli: Cli, log: Log) -> None:
        """The longest period allowed, 366 days, is read whole."""
        log.asked("Bank A", NUMBER, datetime(2025, 1, 1, tzinfo=UTC))
        log.asked("Bank A", NUMBER, datetime(2026, 1, 1, 23, tzinfo=UTC))
        listed = cli.json("queries", "--number", NUMBER, "--since", "2025-01-01", "--until", "2026-01-02")
        assert [q["asked_at"] for q in listed] == ["2025-01-01T00:00:00+00:00", "2026-01-01T23:00:00+00:00"]

    def test_no_query_about_the_number_is_an_empty_list(self, cli: Cli, log: Log) -> None:
        """With nothing recorded about the number in the period: ``[]``, or a line saying so, and exit 0."""
        log.asked("Bank A", OTHER, datetime(2026, 11, 5, tzinfo=UTC))
        assert cli.json("queries", "--number", NUMBER, *PERIOD) == []
        result = cli.run("queries", "--number", NUMBER, *PERIOD)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("no queries about +86138****8000 from 2026-11-01T00:00:00+00:00")

    def test_text_output_is_a_table_with_the_number_masked(self, cli: Cli, log: Log) -> None:
        """For a person: a count, a header and one line per query (time in UTC to the second, client id,
        name, API, status, answer); the number itself only masked."""
        log.asked("Bank A", NUMBER, datetime(2026, 11, 3, 9, 15, 0, 123456, tzinfo=UTC))
        log.asked(
            "Bank B", NUMBER, datetime(2026, 11, 20, 18, 0, tzinfo=UTC), answer="QUOTA_EXCEEDED", status=429
        )
        result = cli.run("queries", "--number", NUMBER, *PERIOD)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].startswith("2 queries about +86138****8000 from 2026-11-01T00:00:00+00:00")
        assert lines[2].split() == ["asked", "at", "(UTC)", "client_id", "client", "api", "status", "answer"]
        assert lines[3].split() == ["2026-11-03", "09:15:00", "rp_bank_a", "Bank", "A", CHECK, "200", SWAPPED]
        assert lines[4].split() == [
            "2026-11-20",
            "18:00:00",
            "rp_bank_b",
            "Bank",
            "B",
            CHECK,
            "429",
            "QUOTA_EXCEEDED",
        ]
        assert lines[3].index("rp_bank_a") == lines[4].index("rp_bank_b")  # columns line up
        assert NUMBER not in result.output

    def test_chinese_names_keep_the_columns_in_line_and_long_names_are_cut(self, cli: Cli, log: Log) -> None:
        """A name in Chinese takes two columns a character; past 30 columns it is cut with an ellipsis, and
        the columns after it still line up."""
        log.client("招商银行信用卡中心反欺诈与风险控制部")
        log.asked("招商银行信用卡中心反欺诈与风险控制部", NUMBER, datetime(2026, 11, 3, tzinfo=UTC))
        log.asked("Bank A", NUMBER, datetime(2026, 11, 4, tzinfo=UTC))
        result = cli.run("queries", "--number", NUMBER, *PERIOD)
        assert result.exit_code == 0, result.output
        first, second = result.stdout.splitlines()[3:5]
        assert "招商银行信用卡中心反欺诈与风…" in first

        def column(line: str, text: str) -> int:
            before = line[: line.index(text)]
            return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in before)

        assert column(first, CHECK) == column(second, CHECK)

    def test_limit_keeps_the_oldest_and_says_where_the_rest_starts(self, cli: Cli, log: Log) -> None:
        """``--limit 2`` of three queries lists the two oldest and tells, on stderr, the ``--since`` that
        lists the rest."""
        times = [datetime(2026, 11, day, tzinfo=UTC) for day in (3, 4, 5)]
        for at in times:
            log.asked("Bank A", NUMBER, at)
        result = cli.run("queries", "--number", NUMBER, *PERIOD, "--limit", "2", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == [_row("Bank A", times[0]), _row("Bank A", times[1])]
        assert f"--since {times[1].isoformat()}" in result.stderr
        assert "more than 2" not in cli.run("queries", "--number", NUMBER, *PERIOD, "--limit", "3").stderr


class TestRefusals:
    """Bad input to ``clients queries``: a clear error, a non-zero exit, nothing changed."""

    @pytest.mark.parametrize(
        ("args", "code"),
        [
            (("--number", "13800138000"), "INVALID_MSISDN"),
            (("--number", "+86abc"), "INVALID_MSISDN"),
            (("--number", "+999123456"), "INVALID_MSISDN"),
            (("--number", NUMBER, "--since", "2026-13-01"), "INVALID_DATE"),
            (("--number", NUMBER, "--until", "yesterday"), "INVALID_DATE"),
            (("--number", NUMBER, "--since", ""), "INVALID_DATE"),
            (("--number", NUMBER, "--until", "0001-01-05"), "INVALID_DATE"),
            (("--number", NUMBER, "--since", "2026-11-01", "--until", "2026-11-01"), "INVALID_PERIOD"),
            (("--number", NUMBER, "--since", "2026-12-01", "--until", "2026-11-01"), "INVALID_PERIOD"),
            (("--number", NUMBER, "--since", "9999-01-01"), "INVALID_PERIOD"),
            (
                ("--number", NUMBER, "--since", "2025-01-01", "--until", "2026-01-02T00:00:01"),
                "PERIOD_TOO_LONG",
            ),
            (("--number", NUMBER, "--since", "2000-01-01"), "PERIOD_TOO_LONG"),
        ],
    )
    def test_bad_input_is_refused_with_its_code_and_changes_nothing(
        self, cli: Cli, log: Log, args: tuple[str, ...], code: str
    ) -> None:
        """A number not in E.164, a date that is not one, ``--since`` not before ``--until``, a period over
        366 days: exit 1 with the error's code (JSON on stdout, a line on stderr), and no data changed."""
        log.asked("Bank A", NUMBER, datetime(2026, 11, 5, tzinfo=UTC))
        before = log.snapshot()
        as_json = cli.run("queries", *args, "--json")
        assert as_json.exit_code == 1, as_json.output
        error = json.loads(as_json.stdout)
        assert error["error"] == code and error["message"]
        as_text = cli.run("queries", *args)
        assert as_text.exit_code == 1
        assert as_text.stdout == ""
        assert as_text.stderr.startswith(f"error [{code}]: ")
        assert log.snapshot() == before

    @pytest.mark.parametrize(
        "args", [(), ("--number", NUMBER, "--limit", "0"), ("--number", NUMBER, "--limit", "x")]
    )
    def test_a_missing_number_or_a_bad_limit_is_a_usage_error(
        self, cli: Cli, log: Log, args: tuple[str, ...]
    ) -> None:
        """No ``--number``, or a limit below 1 or not a number: a usage error of the command line (exit 2)."""
        before = log.snapshot()
        assert cli.run("queries", *args).exit_code == 2
        assert log.snapshot() == before


class TestReadingSession:
    """The session ``clients queries`` reads through."""

    def test_on_sqlite_the_read_leaves_the_database_to_writers(
        self, fresh: tuple[Engine, Settings], log: Log, backend: str
    ) -> None:
        """On SQLite the read takes no write lock (simkeep's engine takes one for every transaction): the
        query writer records a query while the reading session is open, and the session cannot write."""
        if backend != "sqlite":
            pytest.skip("PostgreSQL readers never block writers")
        log.asked("Bank A", NUMBER, datetime(2026, 11, 5, tzinfo=UTC))
        writer = make_engine(fresh[1].database_url, busy_timeout_ms=200)
        try:
            with reading_session(fresh[1]) as session:
                assert len(queries_about(session, NUMBER, since=SINCE, until=UNTIL, limit=10)) == 1
                with Session(writer) as other:
                    insert_queries(other, [(log.clients["Bank B"].id, CHECK, NUMBER, SWAPPED, 200, 0)])
                    other.commit()
                with pytest.raises(Exception, match="readonly"):
                    session.execute(text("DELETE FROM api_query_batches"))
        finally:
            writer.dispose()
        assert len(log.snapshot()) == 3 + 2
