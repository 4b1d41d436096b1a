"""SQLite's enum CHECK constraints are OR chains (an IN list rebuilds a temporary index per statement)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from simkeep.config import Settings
from simkeep.db import migrate
from simkeep.db.sqlite_checks import or_chains

#: An IN list of three or more string literals inside a CHECK constraint.
_LONG_IN = re.compile(r"\bIN\s*\(\s*'[^)]*'\s*,\s*'[^)]*'\s*,\s*'", re.IGNORECASE)


class TestOrChains:
    """The rewriting of constraint text."""

    def test_three_or_more_values_become_an_or_chain(self) -> None:
        """Each value becomes one comparison with the same column, in the same order."""
        assert or_chains("CHECK (kind IN ('voice', 'sms', 'data'))") == (
            "CHECK ((kind = 'voice' OR kind = 'sms' OR kind = 'data'))"
        )

    def test_two_values_are_left_alone(self) -> None:
        """SQLite evaluates a list of one or two values in place already."""
        assert or_chains("CHECK (language IN ('zh-CN', 'en'))") == "CHECK (language IN ('zh-CN', 'en'))"

    def test_quoted_names_and_escaped_quotes_are_kept(self) -> None:
        """A quoted column name and a value holding a quote ('') come through unchanged."""
        assert or_chains("CHECK (\"my col\" IN ('a''b', 'c', 'd'))") == (
            "CHECK ((\"my col\" = 'a''b' OR \"my col\" = 'c' OR \"my col\" = 'd'))"
        )

    def test_other_conditions_are_left_alone(self) -> None:
        """Comparisons, numeric lists and NOT IN are not touched."""
        for sql in ("CHECK (aging_days >= 45)", "CHECK (n IN (1, 2, 3))", "CHECK (x = 'a' OR x = 'b')"):
            assert or_chains(sql) == sql

    def test_several_lists_in_one_table(self) -> None:
        """Every list of a CREATE TABLE statement is rewritten."""
        sql = "CREATE TABLE t (a TEXT CHECK (a IN ('x', 'y', 'z')), b TEXT CHECK (b IN ('p', 'q', 'r', 's')))"
        assert or_chains(sql) == (
            "CREATE TABLE t (a TEXT CHECK ((a = 'x' OR a = 'y' OR a = 'z')), "
            "b TEXT CHECK ((b = 'p' OR b = 'q' OR b = 'r' OR b = 's')))"
        )


class TestMigratedSchema:
    """The schema the migrations build on SQLite."""

    def test_no_long_in_list_is_left(self, engine: Engine) -> None:
        """No table's CHECK constraint holds an IN list of three or more values."""
        if engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL evaluates IN lists in place")
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all()
        assert [name for name, sql in tables if _LONG_IN.search(sql or "")] == []

    def test_constraints_still_refuse_bad_values(self, engine: Engine) -> None:
        """An unknown value is refused by the rewritten constraint, on every backend."""
        with (
            engine.connect() as conn,
            conn.begin(),
            pytest.raises(IntegrityError, match="ck_usage_events_usage_kind"),
        ):
            conn.execute(
                text(
                    "INSERT INTO usage_events (event_id, line_id, kind, occurred_at, counted, "
                    "received_at) VALUES ('e1', 1, 'telepathy', CURRENT_TIMESTAMP, true, CURRENT_TIMESTAMP)"
                )
            )


class TestMigration0011:
    """Revision 0011 rewrites the constraints of a database made before it."""

    def test_an_older_table_is_rewritten_with_its_rows(self, fresh: tuple[Engine, Settings]) -> None:
        """A table made with the IN form keeps its rows, gets the OR form, and still refuses bad values."""
        engine, _ = fresh
        if engine.dialect.name != "sqlite":
            pytest.skip("the revision changes nothing on PostgreSQL")
        migrate.downgrade(engine, "0010")
        with engine.begin() as conn:  # written as SQLAlchemy wrote enum constraints before 0011
            conn.exec_driver_sql(
                "CREATE TABLE legacy_kinds (id INTEGER PRIMARY KEY, kind VARCHAR(9) NOT NULL, "
                "CONSTRAINT ck_legacy_kind CHECK (kind IN ('voice', 'sms', 'data')))"
            )
            conn.exec_driver_sql("INSERT INTO legacy_kinds (kind) VALUES ('voice'), ('data')")
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        with engine.connect() as conn:
            schema = "SELECT sql FROM sqlite_master WHERE name = 'legacy_kinds'"
            sql = conn.exec_driver_sql(schema).scalar_one()
            assert "(kind = 'voice' OR kind = 'sms' OR kind = 'data')" in sql
            assert conn.exec_driver_sql("SELECT kind FROM legacy_kinds ORDER BY id").scalars().all() == [
                "voice",
                "data",
            ]
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalars().all() == ["ok"]
            conn.rollback()
            with conn.begin(), pytest.raises(IntegrityError, match="ck_legacy_kind"):
                conn.exec_driver_sql("INSERT INTO legacy_kinds (kind) VALUES ('fax')")
            with conn.begin():
                conn.exec_driver_sql("INSERT INTO legacy_kinds (kind) VALUES ('sms')")
            with conn.begin():
                conn.exec_driver_sql("DROP TABLE legacy_kinds")
        assert migrate.drift(engine) == []
