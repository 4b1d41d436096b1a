"""The change feed of the SIM Swap facts: camara_changes, written by triggers on lines and sim_changes

Every API worker keeps a copy of each line's SIM Swap facts (status, activation, last SIM change) and
polls this feed to keep it fresh (simkeep.camara.facts). The triggers write the number of every line whose
facts change, in the changing transaction, whichever code or tool changes it:

- lines: a new line; a change of msisdn, status or activated_at (only when the value really changes, so
  updates of other columns, such as the keep-alive sweep's, cost nothing); a deletion;
- sim_changes: a new, changed or deleted SIM change (the number of its line).

SQLite has row triggers only; PostgreSQL gets statement triggers with transition tables for inserts (a
bulk import or COPY writes its feed rows in one statement) and row triggers for updates and deletions, and
each feed row carries its transaction id (pg_current_xact_id) so that pollers miss no transaction that
commits out of id order.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 19:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simkeep.db.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS = [
    """CREATE TRIGGER camara_changes_line_insert AFTER INSERT ON lines
    BEGIN INSERT INTO camara_changes (msisdn) VALUES (NEW.msisdn); END""",
    """CREATE TRIGGER camara_changes_line_update AFTER UPDATE OF msisdn, status, activated_at ON lines
    WHEN OLD.msisdn IS NOT NEW.msisdn OR OLD.status IS NOT NEW.status
        OR OLD.activated_at IS NOT NEW.activated_at
    BEGIN
        INSERT INTO camara_changes (msisdn) VALUES (NEW.msisdn);
        INSERT INTO camara_changes (msisdn) SELECT OLD.msisdn WHERE OLD.msisdn IS NOT NEW.msisdn;
    END""",
    """CREATE TRIGGER camara_changes_line_delete AFTER DELETE ON lines
    BEGIN INSERT INTO camara_changes (msisdn) VALUES (OLD.msisdn); END""",
    """CREATE TRIGGER camara_changes_sim_change_insert AFTER INSERT ON sim_changes
    BEGIN INSERT INTO camara_changes (msisdn) SELECT msisdn FROM lines WHERE id = NEW.line_id; END""",
    """CREATE TRIGGER camara_changes_sim_change_update AFTER UPDATE ON sim_changes
    BEGIN
        INSERT INTO camara_changes (msisdn) SELECT msisdn FROM lines WHERE id IN (OLD.line_id, NEW.line_id);
    END""",
    """CREATE TRIGGER camara_changes_sim_change_delete AFTER DELETE ON sim_changes
    BEGIN INSERT INTO camara_changes (msisdn) SELECT msisdn FROM lines WHERE id = OLD.line_id; END""",
]
SQLITE_DROP = [
    f"DROP TRIGGER IF EXISTS camara_changes_{name}"
    for name in (
        "line_insert",
        "line_update",
        "line_delete",
        "sim_change_insert",
        "sim_change_update",
        "sim_change_delete",
    )
]

POSTGRES_TRIGGERS = [
    """CREATE FUNCTION camara_changes_lines_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO camara_changes (msisdn, xid)
        SELECT msisdn, pg_current_xact_id()::text::bigint FROM camara_new_lines;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION camara_changes_line_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO camara_changes (msisdn, xid) VALUES (OLD.msisdn, pg_current_xact_id()::text::bigint);
        END IF;
        IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.msisdn IS DISTINCT FROM OLD.msisdn) THEN
            INSERT INTO camara_changes (msisdn, xid) VALUES (NEW.msisdn, pg_current_xact_id()::text::bigint);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION camara_changes_sim_changes_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO camara_changes (msisdn, xid)
        SELECT lines.msisdn, pg_current_xact_id()::text::bigint
        FROM camara_new_sim_changes AS n JOIN lines ON lines.id = n.line_id;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION camara_changes_sim_change_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO camara_changes (msisdn, xid)
        SELECT msisdn, pg_current_xact_id()::text::bigint FROM lines
        WHERE id = OLD.line_id OR (TG_OP = 'UPDATE' AND id = NEW.line_id);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER camara_changes_line_insert AFTER INSERT ON lines
    REFERENCING NEW TABLE AS camara_new_lines FOR EACH STATEMENT
    EXECUTE FUNCTION camara_changes_lines_inserted()""",
    """CREATE TRIGGER camara_changes_line_update AFTER UPDATE OF msisdn, status, activated_at ON lines
    FOR EACH ROW WHEN (OLD.msisdn IS DISTINCT FROM NEW.msisdn OR OLD.status IS DISTINCT FROM NEW.status
        OR OLD.activated_at IS DISTINCT FROM NEW.activated_at)
    EXECUTE FUNCTION camara_changes_line_row()""",
    """CREATE TRIGGER camara_changes_line_delete AFTER DELETE ON lines
    FOR EACH ROW EXECUTE FUNCTION camara_changes_line_row()""",
    """CREATE TRIGGER camara_changes_sim_change_insert AFTER INSERT ON sim_changes
    REFERENCING NEW TABLE AS camara_new_sim_changes FOR EACH STATEMENT
    EXECUTE FUNCTION camara_changes_sim_changes_inserted()""",
    """CREATE TRIGGER camara_changes_sim_change_update AFTER UPDATE ON sim_changes
    FOR EACH ROW EXECUTE FUNCTION camara_changes_sim_change_row()""",
    """CREATE TRIGGER camara_changes_sim_change_delete AFTER DELETE ON sim_changes
    FOR EACH ROW EXECUTE FUNCTION camara_changes_sim_change_row()""",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS camara_changes_line_insert ON lines",
    "DROP TRIGGER IF EXISTS camara_changes_line_update ON lines",
    "DROP TRIGGER IF EXISTS camara_changes_line_delete ON lines",
    "DROP TRIGGER IF EXISTS camara_changes_sim_change_insert ON sim_changes",
    "DROP TRIGGER IF EXISTS camara_changes_sim_change_update ON sim_changes",
    "DROP TRIGGER IF EXISTS camara_changes_sim_change_delete ON sim_changes",
    "DROP FUNCTION IF EXISTS camara_changes_lines_inserted()",
    "DROP FUNCTION IF EXISTS camara_changes_line_row()",
    "DROP FUNCTION IF EXISTS camara_changes_sim_changes_inserted()",
    "DROP FUNCTION IF EXISTS camara_changes_sim_change_row()",
]


def upgrade() -> None:
    op.create_table(
        "camara_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=True),
        sa.Column(
            "changed_at",
            simkeep.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camara_changes")),
    )
    with op.batch_alter_table("camara_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_camara_changes_xid",
            ["xid"],
            unique=False,
            postgresql_where=sa.text("xid IS NOT NULL"),
            sqlite_where=sa.text("xid IS NOT NULL"),
        )
    statements = POSTGRES_TRIGGERS if op.get_bind().dialect.name == "postgresql" else SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = POSTGRES_DROP if op.get_bind().dialect.name == "postgresql" else SQLITE_DROP
    for statement in statements:
        op.execute(statement)
    with op.batch_alter_table("camara_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_camara_changes_xid")
    op.drop_table("camara_changes")
