"""Inspections record the inference engine and precision beside the model sha256.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Additive only: two columns with an empty-string server default, so rows written before (and stations still
on older code) stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # plain ADD COLUMN (SQLite does it in place: no table rebuild on a station's months of results)
    op.add_column("inspections", sa.Column("engine", sa.String(32), nullable=False, server_default=""))
    op.add_column("inspections", sa.Column("precision", sa.String(16), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("precision")
        batch.drop_column("engine")
