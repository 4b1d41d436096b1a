"""SQLite: the numbers' unique keys become unique indexes, which a first lines import can drop and rebuild

On SQLite a ``UNIQUE`` constraint written in ``CREATE TABLE`` lives in an index that only a new copy of the
table can lose. The numbers' keys (``uq_lines_msisdn`` and the embedded HLR's
``uq_embedded_hlr_subscribers_msisdn``) are now named unique indexes (``CREATE UNIQUE INDEX``) instead: the
same names, columns and guarantee (``INSERT ... ON CONFLICT (msisdn)`` finds them alike), but an index a
first ``simkeep lines import`` into an empty database can drop for its one transaction and build again at
the end, as a PostgreSQL first load does (``simkeep.lines.importer.first_load``). Numbers come in no useful
order in an operator's export, and inserting them one by one into these two keys, row after row of a
million-line load, was the largest share of the SQLite writer's time after the rows themselves.

PostgreSQL is left as it is (its first load drops constraints as well as indexes). The models keep the
constraints; ``simkeep.db.migrate.drift`` counts a SQLite unique index as the unique constraint of the same
name and columns.

SQLite cannot drop a constraint in place, so each table is copied (SQLite's documented way of altering a
table: a new table, the rows copied over, the old one dropped, the new one renamed, its indexes and
triggers made again), under the migration's one write transaction.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 23:00:00.000000
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, key name, column)
_KEYS = (
    ("lines", "uq_lines_msisdn", "msisdn"),
    ("embedded_hlr_subscribers", "uq_embedded_hlr_subscribers_msisdn", "msisdn"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, name, column in _KEYS:
        _copy_table(table, drop_clause=name)
        op.execute(f"CREATE UNIQUE INDEX {name} ON {table} ({column})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, name, column in _KEYS:
        op.execute(f"DROP INDEX {name}")
        _copy_table(table, add_clause=f"CONSTRAINT {name} UNIQUE ({column})")


def _copy_table(table: str, *, drop_clause: str | None = None, add_clause: str | None = None) -> None:
    """Make ``table`` anew from its own ``CREATE TABLE`` statement less the constraint named ``drop_clause``
    or plus ``add_clause``, with its rows, indexes and triggers (foreign keys are off while migrating, see
    ``simkeep.db.migrate``)."""
    raw: Any = op.get_bind().connection.driver_connection
    (create,) = raw.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    extras = [
        sql
        for (sql,) in raw.execute(
            "SELECT sql FROM sqlite_schema WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            (table,),
        )
    ]
    if drop_clause is not None:
        clause = re.compile(rf",\s*CONSTRAINT {drop_clause} UNIQUE \([^)]*\)")
        new, found = clause.subn("", create)
        if found != 1:
            msg = f"{table}: expected one constraint {drop_clause} in {create!r}"
            raise RuntimeError(msg)
    else:
        end = create.rstrip().rindex(")")
        new = f"{create[:end].rstrip()}, \n\t{add_clause}\n)"
    copy = f"_sk_new_{table}"
    head = re.compile(rf'^CREATE TABLE "?{table}"?\s*\(')
    new, found = head.subn(f'CREATE TABLE "{copy}" (', new)
    if found != 1:
        msg = f"{table}: unexpected statement {create!r}"
        raise RuntimeError(msg)
    # generated columns (hidden 2 or 3) are computed, not copied
    columns = ", ".join(
        f'"{name}"' for _, name, *_, hidden in raw.execute(f'PRAGMA table_xinfo("{table}")') if hidden == 0
    )
    op.execute(new)
    op.execute(f'INSERT INTO "{copy}" ({columns}) SELECT {columns} FROM "{table}"')  # noqa: S608 - its own names
    op.execute(f'DROP TABLE "{table}"')
    # the legacy rename leaves other tables' references and triggers as they are: they name the table
    # by its name, which the copy takes now
    raw.execute("PRAGMA legacy_alter_table = ON")
    try:
        op.execute(f'ALTER TABLE "{copy}" RENAME TO "{table}"')
    finally:
        raw.execute("PRAGMA legacy_alter_table = OFF")
    for sql in extras:
        op.execute(sql)
