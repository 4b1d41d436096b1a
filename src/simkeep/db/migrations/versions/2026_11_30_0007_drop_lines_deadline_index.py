"""Drop the index on lines.deadline_at: no query looks lines up by deadline

The keep-alive sweep finds its lines by ``next_action_at`` and rewrites ``deadline_at`` of every line it
looks at; the unused index only made each of those writes (and each activity import) update one more index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 16:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lines_deadline_at"))


def downgrade() -> None:
    with op.batch_alter_table("lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lines_deadline_at"), ["deadline_at"], unique=False)
