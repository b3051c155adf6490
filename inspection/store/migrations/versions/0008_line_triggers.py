"""Line triggers: one row per trigger a line station received and how it was answered.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Only adds a table, so stations on older code keep working against a database migrated to 0008.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "line_triggers",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("station_id", sa.String(128), nullable=False),
        sa.Column("trigger_id", sa.String(128), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("frames", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_line_triggers"),
        sa.UniqueConstraint("station_id", "trigger_id", name="uq_line_triggers_station_id"),
    )
    op.create_index("ix_line_triggers_station_id_received_at", "line_triggers", ["station_id", "received_at"])
    op.create_index("ix_line_triggers_unit_id", "line_triggers", ["unit_id"])


def downgrade() -> None:
    op.drop_index("ix_line_triggers_unit_id", table_name="line_triggers")
    op.drop_index("ix_line_triggers_station_id_received_at", table_name="line_triggers")
    op.drop_table("line_triggers")
