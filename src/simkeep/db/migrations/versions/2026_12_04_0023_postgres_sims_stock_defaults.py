"""PostgreSQL: a new SIM's status and times have defaults in the table, which the stock import leaves to it

``simkeep sims import`` COPYs each batch of SIM stock straight into ``sims``. Every row had carried its
status (``in_stock``) and its creation and update times, the same for the whole batch, as text that the
server parsed again for each row: two timestamps with time zone a row, a fifth of the server's time for a
million SIMs (measured through the command: 9.4-10.0 s against 7.2-7.8 s a million rows). With these
defaults the COPY names the SIM's own columns only; ``now()``, the transaction's start, is each batch's
time, as it was.

The models keep their own defaults (SQLAlchemy's, for every insert simkeep makes otherwise), and SQLite,
whose import inserts from a staging table with every value given, is left as it is: its table would have
to be copied to change a default. The drift check does not compare server defaults.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 06:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (column, default) of ``sims``
DEFAULTS = (("status", "'in_stock'"), ("created_at", "now()"), ("updated_at", "now()"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE sims {', '.join(f'ALTER COLUMN {c} SET DEFAULT {d}' for c, d in DEFAULTS)}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE sims {', '.join(f'ALTER COLUMN {c} DROP DEFAULT' for c, _ in DEFAULTS)}")
