"""lake_snapshots: the commit point of each raw partition (Iceberg snapshot ids, decision 0010)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lake_snapshots",
        sa.Column("zone", sa.String(length=40), nullable=False),
        sa.Column("table", sa.String(length=250), nullable=False),
        sa.Column("ds", sa.Date(), nullable=False),
        sa.Column("snapshot_id", sa.BigInteger(), nullable=True),
        sa.Column("previous_snapshot_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=80), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("zone", "table", "ds"),
    )


def downgrade() -> None:
    op.drop_table("lake_snapshots")
