"""An imported line's SIM-change record no longer writes its number to the CAMARA change feed a second time

The CAMARA change feed (migration 0008) got two rows for each imported line: one from the new line and one
from its SIM-change record (channel ``import``), which the lines import writes with the line, in the same
transaction. The line's row already makes every worker reload that number's facts, SIM change included, so
SIM-change records of channel ``import`` no longer add their own. Every other SIM change still does.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 14:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_FEED = """CREATE TRIGGER camara_changes_sim_change_insert AFTER INSERT ON sim_changes{when}
    BEGIN INSERT INTO camara_changes (msisdn) SELECT msisdn FROM lines WHERE id = NEW.line_id; END"""
_POSTGRES_FEED = """CREATE OR REPLACE FUNCTION camara_changes_sim_changes_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO camara_changes (msisdn, xid)
        SELECT lines.msisdn, pg_current_xact_id()::text::bigint
        FROM camara_new_sim_changes AS n JOIN lines ON lines.id = n.line_id{where};
        RETURN NULL;
    END $$"""


def _feed(*, skip_import: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_POSTGRES_FEED.format(where=" WHERE n.channel <> 'import'" if skip_import else ""))
        return
    op.execute("DROP TRIGGER IF EXISTS camara_changes_sim_change_insert")
    op.execute(_SQLITE_FEED.format(when=" WHEN NEW.channel <> 'import'" if skip_import else ""))


def upgrade() -> None:
    _feed(skip_import=True)


def downgrade() -> None:
    _feed(skip_import=False)
