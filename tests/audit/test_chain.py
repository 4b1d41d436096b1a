"""The audit log's hash chain, and `simkeep audit verify`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from simkeep.audit.service import GENESIS_HASH, link_pending, record, verify_chain
from simkeep.cli import app
from simkeep.config import Settings, get_settings
from simkeep.models import AuditEntry


def _disable_guard(session: Session) -> None:
    """Simulate an attacker with database access: drop the append-only guard inside this transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
    else:
        session.execute(text("DROP TRIGGER audit_log_no_update"))
        session.execute(text("DROP TRIGGER audit_log_no_delete"))


class TestChain:
    """Appending and verifying."""

    def test_entries_link_to_their_predecessor(self, db: Session) -> None:
        """Each entry carries the hash of the one before; the first carries the genesis hash."""
        a = record(db, actor="cli", action="test.one", subject_type="t", subject_id=1, data={"x": "中文"})
        b = record(db, actor="cli", action="test.two", subject_type="t", subject_id=1)
        assert (a.prev_hash, a.id) == (None, None)  # linked and written at the commit
        link_pending(db)
        assert a.prev_hash == GENESIS_HASH
        assert b.prev_hash == a.entry_hash
        db.expire_all()
        report = verify_chain(db)
        assert (report.ok, report.entries) == (True, 2)

    def test_edited_entry_is_found(self, db: Session) -> None:
        """Changing an entry's contents breaks the chain at that entry."""
        record(db, actor="cli", action="test.one", subject_type="t", subject_id=1)
        b = record(db, actor="cli", action="test.two", subject_type="t", subject_id=1, reason="original")
        record(db, actor="cli", action="test.three", subject_type="t", subject_id=1)
        link_pending(db)
        _disable_guard(db)
        db.execute(text("UPDATE audit_log SET reason = 'forged' WHERE id = :id"), {"id": b.id})
        db.expire_all()
        report = verify_chain(db)
        assert report.first_broken_id == b.id
        assert report.problem is not None
        assert "hash" in report.problem

    def test_deleted_entry_is_found(self, db: Session) -> None:
        """Removing an entry breaks the link of the entry after it."""
        record(db, actor="cli", action="test.one", subject_type="t", subject_id=1)
        b = record(db, actor="cli", action="test.two", subject_type="t", subject_id=1)
        c = record(db, actor="cli", action="test.three", subject_type="t", subject_id=1)
        link_pending(db)
        _disable_guard(db)
        db.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": b.id})
        db.expire_all()
        assert verify_chain(db).first_broken_id == c.id

    def test_fork_is_refused(self, db: Session) -> None:
        """Two entries can never claim the same predecessor (unique prev_hash)."""
        a = record(db, actor="cli", action="test.one", subject_type="t", subject_id=1)
        link_pending(db)
        from sqlalchemy.exc import IntegrityError

        db.add(
            AuditEntry(
                at=a.at,
                actor="x",
                action="y",
                subject_type="t",
                subject_id="1",
                reason="",
                data={},
                prev_hash=a.prev_hash,
                entry_hash="f" * 64,
            )
        )
        with pytest.raises(IntegrityError):
            db.flush()
        db.rollback()


class TestHeadWithinATransaction:
    """A transaction's entries are linked together at its commit, with one question for the head."""

    @staticmethod
    def _head_queries(engine: Engine) -> list[str]:
        seen: list[str] = []

        @event.listens_for(engine, "before_cursor_execute")
        def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "FROM audit_log" in statement:
                seen.append(statement)

        return seen

    def test_one_head_query_per_transaction_then_a_fresh_one(self, fresh: tuple[Engine, Settings]) -> None:
        engine, _ = fresh
        queries = self._head_queries(engine)
        with Session(engine, expire_on_commit=False) as first:
            a = record(first, actor="cli", action="test.a", subject_type="t", subject_id=1)
            b = record(first, actor="cli", action="test.b", subject_type="t", subject_id=1)
            c = record(first, actor="cli", action="test.c", subject_type="t", subject_id=1)
            assert len(queries) == 0  # nothing asked (nor locked) before the commit
            first.commit()
            assert len(queries) == 1
            assert (b.prev_hash, c.prev_hash) == (a.entry_hash, b.entry_hash)
            # Someone else appends between the two transactions.
            with Session(engine, expire_on_commit=False) as other:
                d = record(other, actor="cli", action="test.d", subject_type="t", subject_id=2)
                other.commit()
            e = record(first, actor="cli", action="test.e", subject_type="t", subject_id=1)
            first.commit()
        assert len(queries) == 3
        assert (d.prev_hash, e.prev_hash) == (c.entry_hash, d.entry_hash)
        with Session(engine) as check:
            assert (verify_chain(check).ok, verify_chain(check).entries) == (True, 5)

    def test_a_rolled_back_savepoint_takes_its_entry_out_of_the_chain(self, db: Session) -> None:
        a = record(db, actor="cli", action="test.a", subject_type="t", subject_id=1)
        savepoint = db.begin_nested()
        record(db, actor="cli", action="test.undone", subject_type="t", subject_id=1)
        savepoint.rollback()
        c = record(db, actor="cli", action="test.c", subject_type="t", subject_id=1)
        link_pending(db)
        assert c.prev_hash == a.entry_hash
        db.expire_all()
        report = verify_chain(db)
        assert (report.ok, report.entries) == (True, 2)

    def test_a_released_savepoint_keeps_its_entry(self, db: Session) -> None:
        record(db, actor="cli", action="test.a", subject_type="t", subject_id=1)
        with db.begin_nested():
            b = record(db, actor="cli", action="test.b", subject_type="t", subject_id=1)
        c = record(db, actor="cli", action="test.c", subject_type="t", subject_id=1)
        link_pending(db)
        assert c.prev_hash == b.entry_hash
        db.expire_all()
        assert verify_chain(db).entries == 3
        assert verify_chain(db).ok


class TestVerifyCommand:
    """`simkeep audit verify` on a real database."""

    @pytest.fixture
    def cli_env(self, fresh: tuple[Engine, Settings], monkeypatch: pytest.MonkeyPatch) -> Engine:
        """The CLI pointed at the fresh database."""
        engine, settings = fresh
        monkeypatch.setenv("SIMKEEP_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("SIMKEEP_SECRET_KEY", settings.secret_key)
        get_settings.cache_clear()
        yield engine
        get_settings.cache_clear()

    def test_intact_chain_exits_zero(self, cli_env: Engine) -> None:
        """An intact chain: exit 0 and the number of entries."""
        with Session(cli_env) as s:
            record(s, actor="cli", action="test.one", subject_type="t", subject_id=1)
            s.commit()
        result = CliRunner().invoke(app, ["audit", "verify", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"ok": True, "entries": 1}

    def test_broken_chain_exits_one_and_names_entry(self, cli_env: Engine) -> None:
        """A tampered entry: exit 1, and the first broken entry is named."""
        with Session(cli_env) as s:
            record(s, actor="cli", action="test.one", subject_type="t", subject_id=1)
            b = record(s, actor="cli", action="test.two", subject_type="t", subject_id=1)
            s.commit()
            b_id = b.id  # given at the flush
            _disable_guard(s)
            s.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE id = :id"), {"id": b_id})
            s.commit()
        result = CliRunner().invoke(app, ["audit", "verify", "--json"])
        assert result.exit_code == 1
        out = json.loads(result.stdout)
        assert (out["error"], out["entry_id"]) == ("AUDIT_CHAIN_BROKEN", b_id)


class TestLinkedAtTheCommit:
    """Entries are linked and written when their transaction commits, so the appenders' lock is held for
    the commit only."""

    def test_an_open_transaction_does_not_hold_up_another_appender(
        self, fresh: tuple[Engine, Settings]
    ) -> None:
        engine, _ = fresh
        with (
            Session(engine, expire_on_commit=False) as first,
            Session(engine, expire_on_commit=False) as other,
        ):
            a = record(first, actor="cli", action="test.a", subject_type="t", subject_id=1)
            if engine.dialect.name == "postgresql":  # an open transaction that has already written
                first.execute(text("SELECT 1"))
                other.execute(text("SET LOCAL lock_timeout = '2s'"))
            b = record(other, actor="cli", action="test.b", subject_type="t", subject_id=2)
            other.commit()  # not held up by the first transaction's entry
            first.commit()
        assert (b.prev_hash, a.prev_hash) == (GENESIS_HASH, b.entry_hash)
        with Session(engine) as check:
            assert (verify_chain(check).ok, verify_chain(check).entries) == (True, 2)

    def test_reading_the_log_sees_the_transactions_own_entries(self, db: Session) -> None:
        from simkeep.audit.service import entries_for

        entry = record(db, actor="cli", action="test.a", subject_type="line", subject_id=7)
        assert [e.action for e in entries_for(db, subject_type="line", subject_id=7)] == ["test.a"]
        assert entry.prev_hash == GENESIS_HASH
        later = record(db, actor="cli", action="test.b", subject_type="line", subject_id=7)
        db.commit()
        assert later.prev_hash == entry.entry_hash
        assert verify_chain(db).entries == 2

    def test_a_rolled_back_savepoint_after_an_early_link(self, db: Session) -> None:
        a = record(db, actor="cli", action="test.a", subject_type="t", subject_id=1)
        savepoint = db.begin_nested()
        record(db, actor="cli", action="test.undone", subject_type="t", subject_id=1)
        assert verify_chain(db).entries == 2  # reading the log linked and wrote both
        savepoint.rollback()
        c = record(db, actor="cli", action="test.c", subject_type="t", subject_id=1)
        db.commit()
        assert c.prev_hash == a.entry_hash
        db.expire_all()
        assert (verify_chain(db).ok, verify_chain(db).entries) == (True, 2)

    def test_a_session_closed_without_committing_writes_nothing_later(
        self, fresh: tuple[Engine, Settings]
    ) -> None:
        engine, _ = fresh
        session = Session(engine, expire_on_commit=False)
        record(session, actor="cli", action="test.dropped", subject_type="t", subject_id=1)
        session.execute(text("SELECT 1"))
        session.close()
        kept = record(session, actor="cli", action="test.kept", subject_type="t", subject_id=1)
        session.commit()
        session.close()
        assert kept.prev_hash == GENESIS_HASH
        with Session(engine) as check:
            assert [a for (a,) in check.execute(text("SELECT action FROM audit_log"))] == ["test.kept"]

    def test_a_rolled_back_transaction_writes_nothing(self, fresh: tuple[Engine, Settings]) -> None:
        engine, _ = fresh
        with Session(engine) as session:
            record(session, actor="cli", action="test.dropped", subject_type="t", subject_id=1)
            session.execute(text("SELECT 1"))
            session.rollback()
            session.commit()
        with Session(engine) as check:
            assert verify_chain(check).entries == 0
