"""SQLite: write the enum CHECK constraints of existing tables as OR chains instead of IN lists

On SQLite, ``kind IN ('voice', 'sms', 'data', 'topup', 'keepalive')`` builds a temporary index of the list
each time a statement runs, so a bulk insert run once per row (``executemany``) paid about 4 microseconds
a row for it; ``(kind = 'voice' OR kind = 'sms' OR ...)`` is the same constraint, evaluated in place (see
:mod:`simkeep.db.sqlite_checks`, which makes every constraint written from now on that way).

Tables made before this revision are rewritten with SQLite's documented procedure for changing a
constraint without rebuilding the table (https://sqlite.org/lang_altertable.html, "making other kinds of
table schema changes"): ``writable_schema``, the new text in ``sqlite_schema``, ``schema_version`` raised
so that every connection reads the schema again, then ``integrity_check``. No row is read or written; the
stored data satisfies the new text because it is the same condition. PostgreSQL is untouched (its ``IN``
costs nothing of the kind). The downgrade changes nothing: the two forms accept exactly the same rows.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from simkeep.db.sqlite_checks import or_chains

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    tables = bind.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE '%CHECK%'"
    ).all()
    changed = [(name, or_chains(sql)) for name, sql in tables if or_chains(sql) != sql]
    if not changed:
        return
    version = int(bind.exec_driver_sql("PRAGMA schema_version").scalar_one())
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        for name, sql in changed:
            bind.exec_driver_sql(
                "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (sql, name)
            )
        bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    finally:
        bind.exec_driver_sql("PRAGMA writable_schema = OFF")
    problems = [row[0] for row in bind.exec_driver_sql("PRAGMA integrity_check").all()]
    if problems != ["ok"]:
        msg = f"SQLite integrity check failed after rewriting the CHECK constraints: {problems[:5]}"
        raise RuntimeError(msg)


def downgrade() -> None:
    """Nothing to undo: the OR chains accept exactly the rows the IN lists accepted."""
