"""Storage choices: the stock queries read the stock-pick index (picking a SIM, and the console's counts);
PostgreSQL keeps room in line_calendar's pages for HOT updates (migration 0015); the lines whose keep-alive
calendar is pending are marked by a generated column, so that moving a deadline can be a HOT update on
PostgreSQL (migration 0016); PostgreSQL keeps half of each lines page free for the same reason (migration
0019)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from simkeep.config import Settings
from simkeep.db.base import utcnow
from simkeep.models import Sim, SimKind, SimLocation, SimStatus
from simkeep.sims.service import reserve_from_stock
from simkeep.web.console.queries import stock_counts
from tests import factories

STOCK_COUNT = "SELECT count(*) FROM sims {} WHERE status IN ('in_stock', 'reserved', 'shipped')"


def _pick_statement(
    db: Session, location: SimLocation = SimLocation.WAREHOUSE, store_id: int | None = None
) -> tuple[str, Any]:
    """The SELECT that reserve_from_stock sends, with its parameters, as the driver receives them."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM sims" in statement:
            sent.append((statement, parameters))

    connection = db.connection()
    event.listen(connection, "before_cursor_execute", capture)
    try:
        reserve_from_stock(db, kind=SimKind.PHYSICAL, location=location, store_id=store_id)
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    assert sent, "reserve_from_stock sent no SELECT on sims"
    return sent[0]


class TestStockPickIndex:
    """``ix_sims_stock_pick`` (status, kind, location, store_id, id), holding the SIMs that are stock (in
    stock, reserved, shipped; migration 0021), serves picking and counting stock."""

    def test_the_pick_uses_the_index(self, db: Session) -> None:
        """The pick's own statement, with its bound status, is planned on ix_sims_stock_pick."""
        for status in (SimStatus.ACTIVE, SimStatus.RETIRED, SimStatus.IN_STOCK, SimStatus.IN_STOCK):
            factories.sim(db, status=status)
        statement, parameters = _pick_statement(db)
        raw = db.connection().connection.driver_connection
        assert raw is not None
        cursor = raw.cursor()
        if db.get_bind().dialect.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)
        else:
            cursor.execute(
                "SET LOCAL enable_seqscan = off"
            )  # a handful of rows: make the planner show its index
            cursor.execute(f"EXPLAIN {statement}", parameters)
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert "ix_sims_stock_pick" in plan, plan

    def test_the_pick_reads_its_places_first_entry_when_the_old_stock_is_used(self, db: Session) -> None:
        """Stock is used oldest first. With the oldest 15,000 of 20,000 SIMs used and the statistics
        gathered, the pick (warehouse and store) reads ix_sims_stock_pick from its place's first entry:
        not the primary key, which PostgreSQL walked past every used SIM (migration 0017), and no sort."""
        store = factories.store(db)
        now = utcnow()
        db.execute(
            insert(Sim),
            [
                {
                    "iccid": factories.make_iccid(700_000 + n),
                    "imsi": factories.make_imsi(700_000 + n),
                    "kind": SimKind.ESIM if n % 10 == 9 else SimKind.PHYSICAL,
                    "status": SimStatus.ACTIVE if n < 15_000 else SimStatus.IN_STOCK,
                    "location": SimLocation.STORE if n % 20 == 7 else SimLocation.WAREHOUSE,
                    "store_id": store.id if n % 20 == 7 else None,
                    "batch": "test",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(20_000)
            ],
        )
        db.execute(text("ANALYZE sims"))
        picked = reserve_from_stock(db, kind=SimKind.PHYSICAL, location=SimLocation.WAREHOUSE)
        assert picked.iccid == factories.make_iccid(700_000 + 15_000)  # the oldest in stock
        raw = db.connection().connection.driver_connection
        assert raw is not None
        sqlite = db.get_bind().dialect.name == "sqlite"
        for location, store_id in ((SimLocation.WAREHOUSE, None), (SimLocation.STORE, store.id)):
            statement, parameters = _pick_statement(db, location, store_id)
            cursor = raw.cursor()
            cursor.execute(f"{'EXPLAIN QUERY PLAN' if sqlite else 'EXPLAIN'} {statement}", parameters)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
            assert "ix_sims_stock_pick" in plan, plan
            assert "pk_sims" not in plan, plan
            assert "Sort" not in plan, plan  # PostgreSQL
            assert "TEMP B-TREE" not in plan, plan  # SQLite

    def test_the_index_holds_the_stock_alone(self, db: Session) -> None:
        """Active, suspended and retired SIMs are not in the index; a SIM leaving stock leaves it."""
        for status in SimStatus:
            factories.sim(db, status=status)
        db.flush()
        if db.get_bind().dialect.name == "sqlite":
            count = STOCK_COUNT.format("INDEXED BY ix_sims_stock_pick")
        else:
            db.execute(text("SET LOCAL enable_seqscan = off"))
            db.execute(text("SET LOCAL enable_bitmapscan = off"))
            count = STOCK_COUNT.format("")
            plan = " ".join(r[0] for r in db.execute(text(f"EXPLAIN {count}")))
            assert "ix_sims_stock_pick" in plan, plan
        assert db.execute(text(count)).scalar_one() == 3
        db.execute(text("UPDATE sims SET status = 'active' WHERE status = 'shipped'"))
        assert db.execute(text(count)).scalar_one() == 2

    def test_the_counts_cover_the_stock(self, db: Session) -> None:
        """The console's counts name each stock status (in stock, reserved, shipped) and no other."""
        for status in SimStatus:
            factories.sim(db, status=status)
        db.flush()
        assert sorted(row[3] for row in stock_counts(db)) == ["in_stock", "reserved", "shipped"]

    def test_the_console_counts_read_the_index_alone(self, db: Session) -> None:
        """SQLite: the console's SIM counts by place, kind and status scan the index, not the table."""
        if db.get_bind().dialect.name != "sqlite":
            pytest.skip("SQLite's plan; PostgreSQL chooses an index-only scan by its visibility map")
        factories.sim(db)
        captured: list[str] = []

        def capture(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            captured.append(statement)

        connection = db.connection()
        event.listen(connection, "before_cursor_execute", capture)
        try:
            stock_counts(db)
        finally:
            event.remove(connection, "before_cursor_execute", capture)
        plan = " ".join(str(row[-1]) for row in db.execute(text(f"EXPLAIN QUERY PLAN {captured[-1]}")))
        assert "COVERING INDEX ix_sims_stock_pick" in plan, plan


@pytest.mark.parametrize(("table", "fillfactor"), [("line_calendar", 80), ("lines", 50)])
def test_fillfactor(engine: Engine, table: str, fillfactor: int) -> None:
    """PostgreSQL: ``line_calendar`` pages keep a fifth free (migration 0015) and ``lines`` pages half
    (migration 0019), so that the activity import's clock moves are HOT updates."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL storage parameter")
    with engine.connect() as conn:
        options = conn.execute(
            text("SELECT reloptions FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
        )
    assert options.scalar() == [f"fillfactor={fillfactor}"]


class TestLinesFillfactor:
    """PostgreSQL: lines pages keep half their room free, so that activity clock moves are HOT updates."""

    def test_a_day_moving_every_clock_writes_no_index_entry(self, db: Session, settings: Settings) -> None:
        """A hundred lines written together, then every one's clock moved (as an activity import does on a
        day each line was active): every update is heap-only. At fillfactor 90 about one in ten was."""
        if db.get_bind().dialect.name != "postgresql":
            pytest.skip("HOT updates are PostgreSQL's")
        line = factories.holder(db, settings).line
        db.flush()
        db.execute(
            text(
                "INSERT INTO lines (msisdn, subscriber_id, plan_id, status, sim_change_lock, activated_at, "
                "last_activity_at, deadline_at, created_at, updated_at) SELECT '+861390000' || "
                "lpad(i::text, 4, '0'), subscriber_id, plan_id, status, false, activated_at, activated_at, "
                "activated_at + interval '180 days', "
                "created_at, updated_at FROM lines, generate_series(1, 100) AS i WHERE id = :id"
            ),
            {"id": line.id},
        )
        db.commit()
        before = db.execute(text(_HOT)).one()
        moved = db.execute(
            text(
                "UPDATE lines SET last_activity_at = now(), deadline_at = now() + interval '180 days' "
                "WHERE msisdn LIKE '+861390000%'"
            )
        ).rowcount
        after = db.execute(text(_HOT)).one()
        assert moved == 100
        assert (after[0] - before[0], after[1] - before[1]) == (100, 100)


class TestCalendarPending:
    """``lines.calendar_pending`` is ``deadline_at IS NULL``, generated by the database; the sweep finds the
    pending lines by its partial index."""

    def test_follows_the_deadline(self, db: Session, settings: Settings) -> None:
        line_id = factories.holder(db, settings).line.id
        db.flush()

        def pending() -> bool:
            found = db.execute(text("SELECT calendar_pending FROM lines WHERE id = :id"), {"id": line_id})
            return bool(found.scalar_one())

        db.execute(text("UPDATE lines SET deadline_at = NULL WHERE id = :id"), {"id": line_id})
        assert pending()
        db.execute(text("UPDATE lines SET deadline_at = activated_at WHERE id = :id"), {"id": line_id})
        assert not pending()
        with pytest.raises(DBAPIError), db.begin_nested():  # generated: nothing may write it
            db.execute(text("UPDATE lines SET calendar_pending = true WHERE id = :id"), {"id": line_id})
        assert not pending()

    def test_the_sweep_finds_pending_lines_by_the_index(self, db: Session, settings: Settings) -> None:
        factories.holder(db, settings)
        db.flush()
        statement = "SELECT id FROM lines WHERE calendar_pending AND +plan_id = 1 LIMIT 10"  # as the sweep
        if db.get_bind().dialect.name == "sqlite":
            rows = db.execute(text(f"EXPLAIN QUERY PLAN {statement}"))
        else:
            db.execute(text("SET LOCAL enable_seqscan = off"))
            rows = db.execute(text(f"EXPLAIN {statement}"))
        plan = " ".join(str(row[-1]) for row in rows)
        assert "ix_lines_calendar_pending" in plan, plan

    def test_moving_a_deadline_is_a_hot_update(self, db: Session, settings: Settings) -> None:
        """PostgreSQL: the activity import's update of a line's clock and deadline writes no index entry
        when the page has room (the deadline is in no index, not even in a predicate)."""
        if db.get_bind().dialect.name != "postgresql":
            pytest.skip("HOT updates are PostgreSQL's")
        line_id = factories.holder(db, settings).line.id
        db.execute(text("UPDATE lines SET deadline_at = activated_at WHERE id = :id"), {"id": line_id})
        db.commit()
        before = db.execute(text(_HOT)).one()
        db.execute(
            text(
                "UPDATE lines SET last_activity_at = now(), deadline_at = now() + interval '180 days' "
                "WHERE id = :id"
            ),
            {"id": line_id},
        )
        after = db.execute(text(_HOT)).one()
        assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


#: This transaction's updates of ``lines`` so far, and how many of them were HOT.
_HOT = "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relid = 'lines'::regclass"
