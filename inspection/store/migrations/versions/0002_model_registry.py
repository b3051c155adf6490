"""Model registry: registered_models, model_audit, registry_settings.

Revision ID: 0002
Revises: 0001
Create Date: 2025-12-03

A frozen snapshot of the schema (not an import of ``models``), like 0001. Only adds tables, so stations
still on 0001 code keep working against a database migrated to 0002.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("champion_lock", sa.Boolean(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("lineage", sa.JSON(), nullable=False),
        sa.Column("previous_champion_id", _BIG_ID, nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.ForeignKeyConstraint(["previous_champion_id"], ["registered_models.id"],
                                name="fk_registered_models_previous_champion_id_registered_models"),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("sha256", name="uq_registered_models_sha256"),
        sa.UniqueConstraint("champion_lock", name="uq_registered_models_champion_lock"),
    )
    op.create_index("ix_registered_models_stage", "registered_models", ["stage"])

    op.create_table(
        "model_audit",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("model_id", _BIG_ID, nullable=False),
        sa.Column("from_stage", sa.String(16), nullable=True),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        _ts("at"),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"],
                                name="fk_model_audit_model_id_registered_models"),
        sa.PrimaryKeyConstraint("id", name="pk_model_audit"),
    )
    op.create_index("ix_model_audit_model_id", "model_audit", ["model_id"])

    op.create_table(
        "registry_settings",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("key", name="pk_registry_settings"),
    )


def downgrade() -> None:
    op.drop_table("registry_settings")
    op.drop_table("model_audit")
    op.drop_table("registered_models")
