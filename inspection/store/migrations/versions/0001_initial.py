"""Initial results log: profiles, orders, units, inspections, detections, source_stats.

Revision ID: 0001
Revises:
Create Date: 2025-11-26

A frozen snapshot of the schema (not an import of ``models``), so this revision keeps meaning the same
thing after the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("hash", name="pk_profiles"),
    )
    op.create_index("ix_profiles_name", "profiles", ["name"])

    op.create_table(
        "orders",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("customer_ref", sa.String(256), nullable=False),
        sa.Column("product", sa.String(256), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("profile_name", sa.String(128), nullable=False),
        sa.Column("profile_hash", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["profile_hash"], ["profiles.hash"], name="fk_orders_profile_hash_profiles"),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )
    op.create_index("ix_orders_profile_hash", "orders", ["profile_hash"])

    op.create_table(
        "units",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("missing_views", sa.JSON(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("closed_at", nullable=True),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_units_order_id_orders"),
        sa.PrimaryKeyConstraint("id", name="pk_units"),
    )
    op.create_index("ix_units_order_id", "units", ["order_id"])

    op.create_table(
        "inspections",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        _ts("captured_at"),
        sa.Column("frame_sha256", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("profile_hash", sa.String(64), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("evidence_path", sa.Text(), nullable=True),
        sa.Column("evidence_sha256", sa.String(64), nullable=True),
        sa.Column("n_findings", sa.Integer(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_inspections_unit_id_units"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name="fk_inspections_order_id_orders"),
        sa.PrimaryKeyConstraint("id", name="pk_inspections"),
        sa.UniqueConstraint("unit_id", "camera_id", "frame_sha256", name="uq_inspections_unit_id"),
    )
    op.create_index("ix_inspections_order_id_verdict", "inspections", ["order_id", "verdict"])
    op.create_index("ix_inspections_evidence_sha256", "inspections", ["evidence_sha256"])

    op.create_table(
        "detections",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("inspection_id", _BIG_ID, nullable=False),
        sa.Column("class_name", sa.String(128), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False),
        sa.Column("y2", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"], ondelete="CASCADE",
                                name="fk_detections_inspection_id_inspections"),
        sa.PrimaryKeyConstraint("id", name="pk_detections"),
    )
    op.create_index("ix_detections_inspection_id", "detections", ["inspection_id"])
    op.create_index("ix_detections_class_name", "detections", ["class_name"])

    op.create_table(
        "source_stats",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("frames_read", sa.BigInteger(), nullable=False),
        sa.Column("frames_failed", sa.BigInteger(), nullable=False),
        sa.Column("frames_dropped", sa.BigInteger(), nullable=False),
        sa.Column("reconnects", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        _ts("recorded_at"),
        sa.PrimaryKeyConstraint("id", name="pk_source_stats"),
    )
    op.create_index("ix_source_stats_source_camera", "source_stats", ["source", "camera_id", "recorded_at"])


def downgrade() -> None:
    op.drop_table("source_stats")
    op.drop_table("detections")
    op.drop_table("inspections")
    op.drop_table("units")
    op.drop_table("orders")
    op.drop_table("profiles")
