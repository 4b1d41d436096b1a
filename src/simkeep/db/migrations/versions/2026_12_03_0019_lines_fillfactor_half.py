"""PostgreSQL: ``lines`` pages keep half their room free, so that an activity import's clock moves are HOT

Every counting usage event moves its line's ``last_activity_at`` and ``deadline_at`` forward. No index holds
either (the partial index's predicate reads the generated ``calendar_pending``, which stays false for a
line whose deadline is known), so PostgreSQL can write the new row version into the same page without
touching the table's six indexes (a heap-only tuple), but only where the page has room for it. At
fillfactor 90 a page of about 64 rows had room for six: measured with ``bench/activity_import.py`` on
PostgreSQL (100,000 lines, a day of 1,000,000 events that moves every line's clock, imported three days in
a row), 10 %, 20 % and 28 % of the updates were HOT and the table grew to 3,218, 4,586 and 5,814 pages; at
fillfactor 50 every update was HOT, the table stayed at 3,125 pages, and the import took 3.6-3.8 s
against 4.1 s. Pages left with dead versions are pruned when the next update finds them more than half
full, so the room comes back without a vacuum.

The price is twice the pages for a freshly written table (a first lines import ran 3-9 % slower, 40,421 and
42,542 against 43,979 and 44,526 lines/s), paid once, against every day's activity import. Pages written
from now on keep the room; ``VACUUM FULL lines`` rewrites the existing ones. Nothing changes on SQLite.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 04:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE lines SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE lines SET (fillfactor = 90)")
