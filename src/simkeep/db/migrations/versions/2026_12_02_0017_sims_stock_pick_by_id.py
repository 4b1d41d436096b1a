"""The stock-pick index ends with the SIM's id, so picking the oldest SIM in stock reads one index entry

Picking a SIM (``ORDER BY id LIMIT 1`` among the SIMs in stock of a kind at a place) had the index
(status, kind, location, store_id), whose entries of one place are not in id order. PostgreSQL then walked
the primary key from the oldest SIM and filtered, on the assumption that SIMs in stock are spread evenly over
the ids; but stock is used oldest first, so the SIMs in stock are the newest ones, and the walk passed over
every used SIM: with 1,000,000 SIMs of which the oldest 500,000 were in use, 0.4-0.6 s a pick. With the id
in the index (and the pick ordering by store and id, see ``simkeep.sims.service.stock_pick``) the pick reads
the first entry of its place. The keys are unique, so PostgreSQL's deduplication of equal keys is off for
this index: it would only cost time when a page fills.

Building the index takes about 2 s per million SIMs on PostgreSQL, during which SIMs cannot be written.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02 03:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = ["status", "kind", "location", "store_id"]


def upgrade() -> None:
    op.drop_index("ix_sims_stock_pick", table_name="sims")
    op.create_index("ix_sims_stock_pick", "sims", [*_OLD, "id"], postgresql_with={"deduplicate_items": "off"})


def downgrade() -> None:
    op.drop_index("ix_sims_stock_pick", table_name="sims")
    op.create_index("ix_sims_stock_pick", "sims", _OLD)
