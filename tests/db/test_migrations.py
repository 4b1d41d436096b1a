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

    def test_usage_events_keyed_by_event_id_keep_their_events(self, fresh: tuple[Engine, Settings]) -> None:
        """Revision 0018 drops the events' surrogate id and keys them by event id: the events stay (in their
        order on SQLite), a repeated event id is still refused, and going back numbers them again."""
        from sqlalchemy.exc import IntegrityError
        from sqlalchemy.orm import Session

        from tests import factories

        engine, settings = fresh
        with Session(engine) as db:
            line_id = factories.holder(db, settings).line.id
            db.commit()
        migrate.downgrade(engine, "0017")
        columns = "event_id, line_id, kind, occurred_at, counted, received_at"
        with engine.begin() as conn:
            for n, event_id in enumerate(["e-b", "e-a", "e-c"]):
                conn.execute(
                    text(
                        f"INSERT INTO usage_events ({columns}) VALUES (:e, :l, 'sms', :at, true, :at)"  # noqa: S608
                    ),
                    {"e": event_id, "l": line_id, "at": f"2026-01-0{n + 1} 00:00:00"},
                )
        migrate.upgrade(engine)
        assert migrate.drift(engine) == []
        order = "rowid" if engine.dialect.name == "sqlite" else "occurred_at"
        with engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT event_id, line_id, kind FROM usage_events ORDER BY {order}")  # noqa: S608
            ).all()
            assert [tuple(r) for r in rows] == [
                ("e-b", line_id, "sms"),
                ("e-a", line_id, "sms"),
                ("e-c", line_id, "sms"),
            ]
            with pytest.raises(
                IntegrityError, match=r"pk_usage_events|UNIQUE constraint failed: usage_events\.event_id"
            ):
                conn.execute(
                    text(f"INSERT INTO usage_events ({columns}) VALUES ('e-a', :l, 'sms', :at, true, :at)"),  # noqa: S608
                    {"l": line_id, "at": "2026-01-09 00:00:00"},
                )
        migrate.downgrade(engine, "0017")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, event_id FROM usage_events ORDER BY id")).all()
            assert [r[1] for r in rows] == ["e-b", "e-a", "e-c"]
            assert len({r[0] for r in rows}) == 3
        migrate.upgrade(engine)
        assert migrate.drift(engine) == []

    def test_identifiers_bytewise_keep_the_change_feed(self, fresh: tuple[Engine, Settings]) -> None:
        """Revision 0020: on PostgreSQL the identifier columns collate as "C" (the drift check names each
        one that does not), the triggers it drops to change them are back and fire, and the rows stay;
        nothing changes on SQLite, which compares bytes already."""
        from sqlalchemy.orm import Session

        from tests import factories

        engine, settings = fresh
        with Session(engine) as db:
            line = factories.holder(db, settings).line
            line_id, msisdn = line.id, line.msisdn
            db.commit()
        postgres = engine.dialect.name == "postgresql"
        migrate.downgrade(engine, "0019")
        before = [d for d in migrate.drift(engine) if isinstance(d, tuple) and d[0] == "collation"]
        assert len(before) == (19 if postgres else 0)
        if postgres:
            assert ("collation", "lines", "msisdn", None, "C") in before
        migrate.upgrade(engine)
        assert migrate.drift(engine) == []
        with engine.begin() as conn:
            kept = conn.execute(text("SELECT msisdn FROM lines WHERE id = :i"), {"i": line_id}).scalar()
            assert kept == msisdn
            fed = conn.execute(text("SELECT count(*) FROM camara_changes")).scalar_one()
            conn.execute(text("UPDATE lines SET msisdn = '+8613900009999' WHERE id = :i"), {"i": line_id})
            fed_after = conn.execute(text("SELECT count(*) FROM camara_changes")).scalar_one()
            assert fed_after == fed + 2  # the new number and the old one (camara_changes_line_update)
            joined = conn.execute(
                text(
                    "SELECT count(*) FROM lines AS l JOIN camara_changes AS c ON c.msisdn = l.msisdn "
                    "WHERE l.id = :i AND c.msisdn = CAST(:m AS text)"
                ),
                {"i": line_id, "m": "+8613900009999"},
            ).scalar_one()
            assert joined >= 1

    def test_stock_pick_holds_the_stock(self, fresh: tuple[Engine, Settings]) -> None:
        """Revision 0021: the stock-pick index holds the SIMs that are stock; the drift check names its
        predicate where a database lacks it (Alembic compares none), and the SIMs stay."""
        from sqlalchemy.orm import Session

        from simkeep.models import SimStatus
        from tests import factories

        engine, _settings = fresh
        with Session(engine) as db:
            for status in SimStatus:
                factories.sim(db, status=status)
            db.commit()
        migrate.downgrade(engine, "0020")
        predicates = [d for d in migrate.drift(engine) if isinstance(d, tuple) and d[0] == "index predicate"]
        assert [d[1:4] for d in predicates] == [("sims", "ix_sims_stock_pick", None)]
        migrate.upgrade(engine)
        assert migrate.drift(engine) == []
        stock = "status IN ('in_stock', 'reserved', 'shipped')"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sims")).scalar_one() == len(SimStatus)
            if engine.dialect.name == "sqlite":
                counted = f"SELECT count(*) FROM sims INDEXED BY ix_sims_stock_pick WHERE {stock}"  # noqa: S608
                assert conn.execute(text(counted)).scalar_one() == 3

    def test_postgres_sims_stock_defaults(self, fresh: tuple[Engine, Settings]) -> None:
        """Revision 0023: on PostgreSQL a SIM's status and times have the table's defaults (the stock
        import's COPY leaves them out), gone when downgraded; SQLite is left as it was; no drift either
        way."""
        engine, _ = fresh

        def defaults() -> dict[str, str | None]:
            with engine.connect() as conn:
                if engine.dialect.name == "sqlite":
                    found = conn.execute(text("SELECT name, dflt_value FROM pragma_table_info('sims')"))
                else:
                    found = conn.execute(
                        text(
                            "SELECT column_name, column_default FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND table_name = 'sims'"
                        )
                    )
                return {
                    str(name): value
                    for name, value in found
                    if name in ("status", "created_at", "updated_at")
                }

        at_head = defaults()
        migrate.downgrade(engine, "0022")
        assert migrate.drift(engine) == []
        assert defaults() == dict.fromkeys(("status", "created_at", "updated_at"))
        migrate.upgrade(engine)
        assert migrate.drift(engine) == []
        assert defaults() == at_head
        if engine.dialect.name == "sqlite":
            assert at_head == dict.fromkeys(("status", "created_at", "updated_at"))
            return
        assert at_head == {
            "status": "'in_stock'::character varying",
            "created_at": "now()",
            "updated_at": "now()",
        }
        with engine.begin() as conn:
            started = conn.execute(text("SELECT now()")).scalar_one()
            new_sim = (
                "INSERT INTO sims (iccid, imsi, kind, location, batch) "
                "VALUES ('89860000000000000017', '460000000000017', 'esim', 'warehouse', 'B')"
            )
            conn.execute(text(new_sim))
            row = conn.execute(text("SELECT status, created_at, updated_at FROM sims")).one()
        assert tuple(row) == ("in_stock", started, started)

    def test_sqlite_number_keys_are_indexes(self, fresh: tuple[Engine, Settings]) -> None:
        """Revision 0022: on SQLite the numbers' unique keys are indexes of their own (which a first lines
        import can drop), as unique as before; the tables are copied with their rows, indexes and triggers,
        and the drift check counts such an index as the models' constraint. PostgreSQL is left as it was."""
        from sqlalchemy.exc import IntegrityError
        from sqlalchemy.orm import Session

        from tests import factories

        engine, settings = fresh
        with Session(engine) as db:
            first, second = factories.holder(db, settings).line, factories.holder(db, settings).line
            db.commit()
            numbers = {first.id: first.msisdn, second.id: second.msisdn}

        def schema() -> dict[str, str | None]:
            with engine.connect() as conn:
                if engine.dialect.name == "sqlite":
                    rows = conn.execute(
                        text(
                            "SELECT name, sql FROM sqlite_schema WHERE type IN ('index', 'trigger') "
                            "AND tbl_name IN ('lines', 'embedded_hlr_subscribers')"
                        )
                    )
                else:
                    rows = conn.execute(
                        text(
                            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                            "AND tablename IN ('lines', 'embedded_hlr_subscribers')"
                        )
                    )
                return {str(name): sql for name, sql in rows}

        at_head = schema()
        migrate.downgrade(engine, "0021")
        assert migrate.drift(engine) == []
        at_0021 = schema()
        migrate.upgrade(engine)
        assert migrate.drift(engine) == []
        assert schema() == at_head
        keys = {"uq_lines_msisdn", "uq_embedded_hlr_subscribers_msisdn"}
        if engine.dialect.name == "sqlite":
            hlr = "embedded_hlr_subscribers"
            assert {name: at_head[name] for name in keys} == {
                "uq_lines_msisdn": "CREATE UNIQUE INDEX uq_lines_msisdn ON lines (msisdn)",
                f"uq_{hlr}_msisdn": f"CREATE UNIQUE INDEX uq_{hlr}_msisdn ON {hlr} (msisdn)",
            }
            assert not keys & at_0021.keys()  # keys of CREATE TABLE, in automatic indexes
            named = {name for name, sql in at_head.items() if sql is not None} - keys
            assert named == {name for name, sql in at_0021.items() if sql is not None}  # indexes, triggers
        else:
            assert at_head == at_0021
        with engine.begin() as conn:
            assert dict(conn.execute(text("SELECT id, msisdn FROM lines")).all()) == numbers
            conn.execute(
                text(
                    "INSERT INTO embedded_hlr_subscribers (imsi, msisdn, network_access_mode, updated_at) "
                    "VALUES ('460019999999991', '+8613999999991', 'cs+ps', CURRENT_TIMESTAMP)"
                )
            )
        for statement in (
            "UPDATE lines SET msisdn = :number WHERE id = :other",
            "INSERT INTO embedded_hlr_subscribers (imsi, msisdn, network_access_mode, updated_at) "
            "VALUES ('460019999999992', '+8613999999991', 'cs+ps', CURRENT_TIMESTAMP)",
        ):
            with engine.begin() as conn, pytest.raises(IntegrityError, match=r"(?i)unique"):
                conn.execute(text(statement), {"number": first.msisdn, "other": second.id})
        with engine.connect() as conn:
            assert dict(conn.execute(text("SELECT id, msisdn FROM lines")).all()) == numbers
        if engine.dialect.name == "sqlite":  # an index that is not the key is drift
            with engine.begin() as conn:
                conn.execute(text("DROP INDEX uq_lines_msisdn"))
                conn.execute(text("CREATE INDEX uq_lines_msisdn ON lines (msisdn)"))
            found = [d for d in migrate.drift(engine) if isinstance(d, tuple)]
            assert [(d[0], d[1].name) for d in found] == [
                ("remove_index", "uq_lines_msisdn"),
                ("add_constraint", "uq_lines_msisdn"),
            ]
