"""CAMARA SIM swap subscriptions and the API workers that share client rates

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 12:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import simkeep.db.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "camara_workers",
        sa.Column("worker_id", sa.String(length=64), nullable=False),
        sa.Column("seen_at", simkeep.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_camara_workers")),
    )
    with op.batch_alter_table("camara_workers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_camara_workers_seen_at"), ["seen_at"], unique=False)

    op.create_table(
        "camara_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("line_id", sa.Integer(), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=False),
        sa.Column("three_legged", sa.Boolean(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("sink", sa.String(length=2048), nullable=False),
        sa.Column("credential_type", sa.String(length=16), nullable=True),
        sa.Column("credential_key_id", sa.String(length=32), nullable=True),
        sa.Column("credential_nonce", sa.LargeBinary(length=12), nullable=True),
        sa.Column("credential_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("access_token_expires_at", simkeep.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", simkeep.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("max_events", sa.Integer(), nullable=True),
        sa.Column("events_queued", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "ACTIVE",
                "EXPIRED",
                "DELETED",
                name="subscription_status",
                native_enum=False,
                create_constraint=True,
                length=15,
            ),
            nullable=False,
        ),
        sa.Column("termination_reason", sa.String(length=32), nullable=True),
        sa.Column("starts_at", simkeep.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", simkeep.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", simkeep.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["api_clients.id"], name=op.f("fk_camara_subscriptions_client_id_api_clients")
        ),
        sa.ForeignKeyConstraint(
            ["line_id"], ["lines.id"], name=op.f("fk_camara_subscriptions_line_id_lines")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camara_subscriptions")),
        sa.UniqueConstraint("public_id", name=op.f("uq_camara_subscriptions_public_id")),
    )
    with op.batch_alter_table("camara_subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_camara_subscriptions_client_id"), ["client_id"], unique=False)
        batch_op.create_index("ix_camara_subscriptions_line_status", ["line_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("camara_subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_camara_subscriptions_line_status")
        batch_op.drop_index(batch_op.f("ix_camara_subscriptions_client_id"))

    op.drop_table("camara_subscriptions")
    with op.batch_alter_table("camara_workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_camara_workers_seen_at"))

    op.drop_table("camara_workers")
