"""The migration tree builds the schema the models describe, on every backend."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from simkeep.config import Settings
from simkeep.db import migrate


class TestMigrations:
    """Migrations and models."""

    def test_models_and_migrations_agree(self, engine: Engine) -> None:
        """A database built by the migrations has exactly the tables, columns and indexes of the models."""
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert migrate.drift(engine) == []

    def test_audit_log_refuses_update_and_delete(self, engine: Engine) -> None:
        """The database itself keeps the audit log append-only."""
        with engine.connect() as conn:
            tx = conn.begin()
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, subject_type, subject_id, reason, data, "
                    "prev_hash, entry_hash) "
                    "VALUES (CURRENT_TIMESTAMP, 'a', 'b', 'c', 'd', '', '{}', 'p', 'h')"
                )
            )
            nested = conn.begin_nested()
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text("UPDATE audit_log SET actor = 'x'"))
            nested.rollback()
            nested = conn.begin_nested()
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text("DELETE FROM audit_log"))
            nested.rollback()
            tx.rollback()


class TestMigrationsWithData:
    """Migrations keep the data of a database in use."""

    def test_round_trip_keeps_orders_and_their_references(self, fresh: tuple[Engine, Settings]) -> None:
        """Down to 0002 and up again (tables rebuilt on SQLite) with the demo loaded: nothing is lost."""
        from simkeep.db.engine import make_session_factory
        from simkeep.demo.dataset import load

        engine, settings = fresh
        with make_session_factory(engine)() as session:
            load(session, settings)
            session.commit()
        tables = (
            "replacement_orders",
            "identity_checks",
            "evidence_files",
            "order_events",
            "lines",
            "audit_log",
        )

        def counts() -> dict[str, int]:
            with engine.connect() as conn:
                return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in tables}  # noqa: S608

        before = counts()
        migrate.downgrade(engine, "0002")
        assert migrate.current_revision(engine) == "0002"
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert counts() == before
        assert migrate.drift(engine) == []
