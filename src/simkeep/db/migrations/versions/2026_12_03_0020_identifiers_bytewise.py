"""PostgreSQL: identifier columns compare byte by byte (``COLLATE "C"``)

MSISDNs, ICCIDs, IMSIs, a subscriber's reference and document hash, and the three SIM columns of the stock
pick index (kind, status, location) took the database's collation, which orders text for people
(``C.UTF-8``, ``en_US.UTF-8``): every comparison a call of the C library's ``strcoll``, and no abbreviated
keys when PostgreSQL sorts them. Equality is the same in both; numbers, ICCIDs, IMSIs, hashes and the SIM
columns are ASCII, whose byte order is the order, and an operator's reference (printable text) now sorts by
code point, as on SQLite. Measured here (PostgreSQL 15, ``C.UTF-8``): a unique index of 1,000,000 random
numbers built in 1.4 s against 2.5 s; in a first ``simkeep lines import`` of 1,000,000 lines the server's
statements took 42.7 s against 47.5 s (its CPU over five alternating runs 41.9 s against 45.2 s on
average), and the SIM import's COPY into the indexed ``sims`` about 1 s less a million rows.

Where such a column meets another text (a temporary table's ``text`` column, a parameter), the other one
has the database's default collation, and the column's ``C`` wins: no query needs to name a collation.

Changing a column's collation does not rewrite its table, but builds its indexes again; triggers whose
definition names a changed column (the CAMARA change feed's ``AFTER UPDATE OF msisdn`` on ``lines``)
block the change, so the triggers of the changed tables are dropped and created again, as they were, in the
same transaction. Nothing changes on SQLite, which compares bytes already (BINARY).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 14:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Each table's identifier columns and their lengths (varchar(n)).
COLUMNS: dict[str, tuple[tuple[str, int], ...]] = {
    "camara_changes": (("msisdn", 16),),
    "camara_subscriptions": (("msisdn", 16),),
    "embedded_hlr_subscribers": (("imsi", 15), ("msisdn", 16)),
    "esim_profiles": (("iccid", 20),),
    "esim_progress_events": (("iccid", 20),),
    "lines": (("msisdn", 16),),
    "network_operations": (("msisdn", 16), ("old_imsi", 15), ("new_imsi", 15)),
    "number_pool": (("msisdn", 16),),
    "number_recyclings": (("msisdn", 16),),
    "sims": (("iccid", 20), ("imsi", 15), ("kind", 16), ("status", 17), ("location", 17)),
    "subscribers": (("document_number_hmac", 64), ("external_ref", 64)),
}
_TRIGGERS = sa.text(
    "SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) FROM pg_trigger AS t "
    "JOIN pg_class AS c ON c.oid = t.tgrelid "
    "WHERE NOT t.tgisinternal AND t.tgrelid = ANY(CAST(:tables AS regclass[])) ORDER BY 2, 1"
)


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')


def _collate(collation: str) -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    triggers = conn.execute(_TRIGGERS, {"tables": list(COLUMNS)}).all()
    for name, table, _definition in triggers:
        op.execute(f'DROP TRIGGER "{name}" ON {table}')
    for table, columns in COLUMNS.items():
        changes = ", ".join(
            f"ALTER COLUMN {column} TYPE varchar({length}) COLLATE {collation}" for column, length in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")
    for _name, _table, definition in triggers:
        op.execute(definition)
