"""Operator reviews: reviews, unit_dispositions.

Revision ID: 0003
Revises: 0002
Create Date: 2025-12-10

A frozen snapshot of the schema (not an import of ``models``), like 0001 and 0002. Only adds tables, so
stations still on 0002 code keep working against a database migrated to 0003.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("inspection_id", _BIG_ID, nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("boxes", sa.JSON(), nullable=False),
        sa.Column("frame_width", sa.Integer(), nullable=True),
        sa.Column("frame_height", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(["inspection_id"], ["inspections.id"], name="fk_reviews_inspection_id_inspections"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_reviews_unit_id_units"),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    op.create_index("ix_reviews_inspection_id", "reviews", ["inspection_id"])
    op.create_index("ix_reviews_unit_id", "reviews", ["unit_id"])

    op.create_table(
        "unit_dispositions",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("unit_id", sa.String(128), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _ts("at"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name="fk_unit_dispositions_unit_id_units"),
        sa.PrimaryKeyConstraint("id", name="pk_unit_dispositions"),
    )
    op.create_index("ix_unit_dispositions_unit_id", "unit_dispositions", ["unit_id"])


def downgrade() -> None:
    op.drop_table("unit_dispositions")
    op.drop_table("reviews")
