"""Storage choices: the stock-pick index holds only SIMs in stock and the stock queries still use it (0014);
PostgreSQL keeps room in line_calendar's pages for HOT updates (0015)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from simkeep.models import SimKind, SimLocation, SimStatus
from simkeep.sims.service import reserve_from_stock
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
    """Picking reads the partial index; SIMs out of stock are not in it."""

    def test_the_pick_uses_the_partial_index(self, db: Session) -> None:
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

    def test_only_sims_in_stock_are_indexed(self, db: Session) -> None:
        """The index's condition is the stock status: active and retired SIMs are left out."""
        if db.get_bind().dialect.name == "sqlite":
            sql = "SELECT sql FROM sqlite_master WHERE name = 'ix_sims_stock_pick'"
        else:
            sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_sims_stock_pick'"
        definition = str(db.execute(text(sql)).scalar_one())
        assert "in_stock" in definition
        assert "status" not in definition.split("(", 1)[1].split(")", 1)[0]  # not a key column any more


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
