"""The keep-alive sweep's calendar in a narrow table of its own: line_calendar

The daily sweep reads the plan and the last activity of each line it visits and rewrites when it next
looks at it. Kept in ``lines.next_action_at`` (an
indexed column of the wide row), every such write was a non-HOT update on PostgreSQL that copied the whole
row and inserted into every index of ``lines``. Now ``line_calendar (line_id, plan_id, since,
next_action_at)`` holds what the sweep reads and writes: one row per live line whose deadline is computed;
the sweep touches ``lines`` only to recycle a line.
``lines.deadline_at IS NULL`` (a partial index) marks the lines whose calendar the sweep has to compute.
The index on ``keepalive_reminders.line_id`` goes (its unique key starts with ``line_id``), and so does its
foreign key to ``lines``: on PostgreSQL the check locks the line's row (``FOR KEY SHARE``), which writes the
wide row's page (and its WAL) for every reminder; the reminders are written from ``line_calendar`` rows,
whose foreign key checks the line.

Data: a live line with both a deadline and a next action gets its calendar row; a live line lacking either
gets ``deadline_at = NULL`` (the next sweep computes it, as it did for ``next_action_at = NULL``).

On PostgreSQL ``lines`` gets ``fillfactor = 90`` (for the pages written from now on; ``VACUUM FULL`` or
``CLUSTER`` rewrites the existing ones): recycling a line then updates it in place (HOT).

SQLite drops and adds the column in place (``ALTER TABLE``), without a table copy, so the triggers on
``lines`` stay as they are.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 19:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simkeep.db.base

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "line_calendar",
        sa.Column("line_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("since", simkeep.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_action_at", simkeep.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["line_id"], ["lines.id"], name=op.f("fk_line_calendar_line_id_lines")),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_line_calendar_plan_id_plans")),
        sa.PrimaryKeyConstraint("line_id", name=op.f("pk_line_calendar")),
    )
    op.execute(
        "INSERT INTO line_calendar (line_id, plan_id, since, next_action_at) "
        "SELECT id, plan_id, COALESCE(last_activity_at, activated_at), next_action_at FROM lines "
        "WHERE status != 'recycled' AND deadline_at IS NOT NULL AND next_action_at IS NOT NULL ORDER BY id"
    )
    op.execute(
        "UPDATE lines SET deadline_at = NULL WHERE status != 'recycled' AND next_action_at IS NULL "
        "AND deadline_at IS NOT NULL"
    )
    op.create_index(
        op.f("ix_line_calendar_next_action_at"), "line_calendar", ["next_action_at"], unique=False
    )
    op.drop_index(op.f("ix_lines_next_action_at"), table_name="lines")
    # The unique (line_id, deadline_at, days_left) key serves the look-ups by line: one index less to write
    # per reminder.
    op.drop_index(op.f("ix_keepalive_reminders_line_id"), table_name="keepalive_reminders")
    # No foreign key from the reminders to lines: on PostgreSQL its check locks the line's row (FOR KEY
    # SHARE), a write to the wide row's page for every reminder the sweep writes.
    with op.batch_alter_table("keepalive_reminders", schema=None) as batch_op:
        batch_op.drop_constraint("fk_keepalive_reminders_line_id_lines", type_="foreignkey")
    op.execute("ALTER TABLE lines DROP COLUMN next_action_at")
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page (for the pages written from now on): the sweep's recycling of a line (status,
        # recycled_at, unindexed) then stays on the page (HOT) instead of inserting into every index.
        op.execute("ALTER TABLE lines SET (fillfactor = 90)")
    op.create_index(
        "ix_lines_deadline_unset",
        "lines",
        ["id"],
        unique=False,
        sqlite_where=sa.text("deadline_at IS NULL"),
        postgresql_where=sa.text("deadline_at IS NULL"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE lines RESET (fillfactor)")
    op.drop_index(
        "ix_lines_deadline_unset",
        table_name="lines",
        sqlite_where=sa.text("deadline_at IS NULL"),
        postgresql_where=sa.text("deadline_at IS NULL"),
    )
    op.add_column(
        "lines", sa.Column("next_action_at", simkeep.db.base.UTCDateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE lines SET next_action_at = "
        "(SELECT c.next_action_at FROM line_calendar AS c WHERE c.line_id = lines.id)"
    )
    # A recycled line: nothing more to do (schedule.NEVER, as the sweep left it before this revision).
    op.execute(
        "UPDATE lines SET next_action_at = '9999-01-01 00:00:00.000000' WHERE status = 'recycled'"
        if op.get_bind().dialect.name == "sqlite"
        else "UPDATE lines SET next_action_at = '9999-01-01 00:00:00+00' WHERE status = 'recycled'"
    )
    op.create_index(op.f("ix_lines_next_action_at"), "lines", ["next_action_at"], unique=False)
    with op.batch_alter_table("keepalive_reminders", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_keepalive_reminders_line_id_lines", "lines", ["line_id"], ["id"])
    op.create_index(op.f("ix_keepalive_reminders_line_id"), "keepalive_reminders", ["line_id"], unique=False)
    op.drop_index(op.f("ix_line_calendar_next_action_at"), table_name="line_calendar")
    op.drop_table("line_calendar")
