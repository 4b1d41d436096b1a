"""The stock-pick index holds the SIMs that are stock alone (in stock, reserved, shipped)

``ix_sims_stock_pick`` (status, kind, location, store_id, id) held every SIM. Picking a SIM reads the SIMs in
stock, and the stock counts (the console's and ``GET /v1/stock``) read those in stock, reserved or shipped;
nothing reads the active, suspended and retired SIMs through it, and they are most of the table once an
operator's lines are migrated (each migrated line brings its active SIM). The index is now partial,
``WHERE status IN ('in_stock', 'reserved', 'shipped')``. Every line import skips it: a first PostgreSQL load
of 1,000,000 lines no longer builds it for 1,000,000 active SIMs (2.3 s of the server's time, its costliest
index: the four leading columns are equal for every imported SIM, so each comparison of the sort goes down to
the id), a batch-by-batch import no longer adds an entry per line, and the index stays the size of the stock.

A query reads a partial index only where it names the index's predicate: the queries name it in literals
(``simkeep.models.sims.is_stock``), which SQLite needs (it matches the term, not its meaning) and which keeps
a generic PostgreSQL plan on the index.

Building it takes a scan of ``sims`` and a sort of the stock, during which SIMs cannot be written.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ["status", "kind", "location", "store_id", "id"]
_STOCK = "('in_stock', 'reserved', 'shipped')"


def upgrade() -> None:
    op.drop_index("ix_sims_stock_pick", table_name="sims")
    op.create_index(
        "ix_sims_stock_pick",
        "sims",
        _COLUMNS,
        postgresql_with={"deduplicate_items": "off"},
        postgresql_where=sa.text(f"status::text IN {_STOCK}"),  # the form pg_get_indexdef gives back
        sqlite_where=sa.text(f"status IN {_STOCK}"),
    )


def downgrade() -> None:
    op.drop_index("ix_sims_stock_pick", table_name="sims")
    op.create_index("ix_sims_stock_pick", "sims", _COLUMNS, postgresql_with={"deduplicate_items": "off"})
