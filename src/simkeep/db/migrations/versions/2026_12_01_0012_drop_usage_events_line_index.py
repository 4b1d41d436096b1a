"""Drop the index on usage_events (line_id, occurred_at): every imported event paid a random insert into it

An activity import appends events in the order the mediation system exported them, which is roughly time
order but spread over every line, so ``ix_usage_events_line_occurred`` was written at a random place for
every event. Measured on SQLite (1,000,000 events over 100,000 lines, batches of 200,000, the table as
the importer writes it): 5.35 s with the index, 2.93 s without. Nothing reads events by line: a line's
keep-alive state lives on the line (``last_activity_at``, ``deadline_at``) and in ``line_calendar``; the
events table is the deduplication record (its unique ``event_id``) and the import's own
"newest event of this batch" query reads a range of ``id``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 10:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_usage_events_line_occurred", table_name="usage_events")


def downgrade() -> None:
    op.create_index("ix_usage_events_line_occurred", "usage_events", ["line_id", "occurred_at"], unique=False)
