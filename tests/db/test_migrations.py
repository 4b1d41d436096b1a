"""The migration tree builds the schema the models describe, on every backend."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

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
