"""usage_events is keyed by the mediation system's event id: the surrogate ``id`` column is dropped

Every imported event paid for two keys: the serial ``id`` (a sequence value and an entry in its primary
key index) and the unique ``event_id`` that deduplicates events. Nothing looks an event up by ``id``; the
activity import used a range of it only to find the events its own transaction inserted, which it now
learns from the insert itself (``RETURNING`` on PostgreSQL; the table's ``rowid`` on SQLite). Measured on
PostgreSQL 15 (``COPY`` of 1,000,000 events in binary format): 2.70-2.85 s with both keys, 1.82-1.92 s
with ``event_id`` alone.

PostgreSQL drops the column and its key (a catalog change) and builds the primary key on ``event_id``
(about 1-2 s per million events, during which the table cannot be written). SQLite rebuilds the table.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02 14:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KIND_CHECK = (
    "CONSTRAINT ck_usage_events_usage_kind CHECK ((kind = 'voice' OR kind = 'sms' OR kind = 'data' "
    "OR kind = 'topup' OR kind = 'keepalive'))"
)
_COLUMNS = "event_id, line_id, kind, occurred_at, counted, received_at"


def _rebuild_sqlite(key: str, first_column: str, unique: str) -> None:
    """SQLite: make ``usage_events`` again with ``key`` as its primary key (the documented way: a new
    table, the rows copied in their order, the old one dropped and the new one renamed)."""
    op.execute(
        "CREATE TABLE usage_events_new (\n"
        f"{first_column}"
        "\tevent_id VARCHAR(80) NOT NULL, \n"
        "\tline_id INTEGER NOT NULL, \n"
        "\tkind VARCHAR(17) NOT NULL, \n"
        "\toccurred_at DATETIME NOT NULL, \n"
        "\tcounted BOOLEAN NOT NULL, \n"
        "\treceived_at DATETIME NOT NULL, \n"
        f"\tCONSTRAINT pk_usage_events PRIMARY KEY ({key}), \n"
        "\tCONSTRAINT fk_usage_events_line_id_lines FOREIGN KEY(line_id) REFERENCES lines (id), \n"
        f"{unique}"
        f"\t{_KIND_CHECK}\n"
        ")"
    )
    op.execute(
        f"INSERT INTO usage_events_new ({_COLUMNS}) SELECT {_COLUMNS} FROM usage_events ORDER BY rowid"  # noqa: S608 - constant column names
    )
    op.execute("DROP TABLE usage_events")
    op.execute("ALTER TABLE usage_events_new RENAME TO usage_events")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite("event_id", "", "")
        return
    op.drop_constraint("pk_usage_events", "usage_events", type_="primary")
    op.drop_column("usage_events", "id")
    op.drop_constraint("uq_usage_events_event_id", "usage_events", type_="unique")
    op.create_primary_key("pk_usage_events", "usage_events", ["event_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(
            "id", "\tid INTEGER NOT NULL, \n", "\tCONSTRAINT uq_usage_events_event_id UNIQUE (event_id), \n"
        )
        return
    op.drop_constraint("pk_usage_events", "usage_events", type_="primary")
    op.execute("ALTER TABLE usage_events ADD COLUMN id serial NOT NULL")
    op.create_primary_key("pk_usage_events", "usage_events", ["id"])
    op.create_unique_constraint("uq_usage_events_event_id", "usage_events", ["event_id"])
