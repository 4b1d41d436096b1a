"""PostgreSQL: line_calendar pages keep a fifth free, so that moving a line's ``since`` is a HOT update

Every batch of the activity import moves the ``since`` of nearly every line it names (``UPDATE
line_calendar SET since = ...``). No index holds ``since``, so PostgreSQL can write the new row version
into the same page without touching the table's two indexes (a heap-only tuple), but only where the page
has room. Packed full (fillfactor 100), every update wrote new entries into both indexes and each batch
left the table bigger and slower: on 100,000 rows moved four times, 376, 594, 766 and 961 ms per update
pass at fillfactor 100 against 374, 334, 365 and 337 ms at 80, half of them HOT. Pages written from now
on keep the room; ``VACUUM FULL line_calendar`` rewrites the existing ones. Nothing changes on SQLite.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE line_calendar SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE line_calendar RESET (fillfactor)")
