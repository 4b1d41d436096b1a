"""Storage choices: the stock queries read the stock-pick index (picking a SIM, and the console's counts);
PostgreSQL keeps room in line_calendar's pages for HOT updates (migration 0015)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from simkeep.models import SimKind, SimLocation, SimStatus
from simkeep.sims.service import reserve_from_stock
from simkeep.web.console.queries import stock_counts
from tests import factories


def _pick_statement(db: Session) -> tuple[str, Any]:
    """The SELECT that reserve_from_stock sends, with its parameters, as the driver receives them."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM sims" in statement:
            sent.append((statement, parameters))

    connection = db.connection()
    event.listen(connection, "before_cursor_execute", capture)
    try:
        reserve_from_stock(db, kind=SimKind.PHYSICAL, location=SimLocation.WAREHOUSE)
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    assert sent, "reserve_from_stock sent no SELECT on sims"
    return sent[0]


class TestStockPickIndex:
    """``ix_sims_stock_pick`` (status, kind, location, store_id) serves picking and counting stock.

    A partial index of the SIMs in stock alone was tried (it saves the lines import one index entry per
    line) and not kept: the console's stock counts, which cover every SIM by status, then read the whole
    table, 0.60 s per million SIMs on SQLite against 0.10 s from this index."""

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


class TestLineCalendarFillfactor:
    """PostgreSQL: line_calendar pages keep a fifth free, so that ``since`` moves are HOT updates."""

    def test_fillfactor(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            pytest.skip("a PostgreSQL storage parameter")
        with engine.connect() as conn:
            options = conn.execute(
                text("SELECT reloptions FROM pg_class WHERE relname = 'line_calendar'")
            ).scalar()
        assert options == ["fillfactor=80"]
