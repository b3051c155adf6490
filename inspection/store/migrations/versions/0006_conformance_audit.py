"""Conformance and traceability: conformance_results, camera_calibrations, audit_chain, audit_heads.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02

A frozen snapshot of the schema (not an import of ``models``), like the earlier revisions. Only adds
tables, so stations on older code keep working against a database migrated to 0006.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "conformance_results",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("inspection_id", _BIG_ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("measured", sa.Text(), nullable=False),
        sa.Column("expected", sa.Text(), nullable=False),
        sa.Column("tolerance", sa.Text(), nullable=False),
        sa.Column("deviation", sa.Float(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"], ondelete="CASCADE",
                                name="fk_conformance_results_inspection_id_inspections"),
        sa.PrimaryKeyConstraint("id", name="pk_conformance_results"),
    )
    op.create_index("ix_conformance_results_inspection_id", "conformance_results", ["inspection_id"])
    op.create_table(
        "camera_calibrations",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("camera_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_camera_calibrations"),
    )
    op.create_index("ix_camera_calibrations_camera_id", "camera_calibrations", ["camera_id"])
    op.create_table(
        "audit_chain",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("station_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_chain"),
        sa.UniqueConstraint("station_id", "seq", name="uq_audit_chain_station_id"),
    )
    op.create_index("ix_audit_chain_unit_id", "audit_chain", ["unit_id"])
    op.create_index("ix_audit_chain_order_id", "audit_chain", ["order_id"])
    op.create_table(
        "audit_heads",
        sa.Column("station_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("station_id", name="pk_audit_heads"),
    )


def downgrade() -> None:
    op.drop_table("audit_heads")
    op.drop_index("ix_audit_chain_order_id", table_name="audit_chain")
    op.drop_index("ix_audit_chain_unit_id", table_name="audit_chain")
    op.drop_table("audit_chain")
    op.drop_index("ix_camera_calibrations_camera_id", table_name="camera_calibrations")
    op.drop_table("camera_calibrations")
    op.drop_index("ix_conformance_results_inspection_id", table_name="conformance_results")
    op.drop_table("conformance_results")
