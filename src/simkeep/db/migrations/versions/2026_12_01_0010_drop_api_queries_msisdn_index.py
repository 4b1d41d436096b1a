"""Drop the index on api_queries.msisdn: every CAMARA query paid a random insert into it

Every SIM Swap check appends a row to ``api_queries``. The rows arrive in time order, so the table and its
``(client_id, asked_at)`` index grow at their ends; an index on the number is written at a random place for
every row. Measured on SQLite (the query log's own writer, 12,000 rows a commit, 1,000,000 rows already
logged): 22 microseconds a row with the index, 6 without; the index's pages were most of the write-ahead
log each second. Nothing reads the log by number on the request path: the per-client daily quota reads
``(client_id, asked_at)``; a holder's privacy request (which relying parties asked about a number, when)
is answered off-line by ``simkeep clients queries --number``, which reads a bounded period of the log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 00:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_api_queries_msisdn", table_name="api_queries")


def downgrade() -> None:
    op.create_index("ix_api_queries_msisdn", "api_queries", ["msisdn"], unique=False)
