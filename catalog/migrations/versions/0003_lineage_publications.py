"""lineage (input partitions of each output partition) and publications (open data)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lineage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("output_path", sa.String(length=500), nullable=False),
        sa.Column("input_path", sa.String(length=500), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lineage_input_path"), ["input_path"], unique=False)
        batch_op.create_index(batch_op.f("ix_lineage_output_path"), ["output_path"], unique=False)

    op.create_table(
        "publications",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("ds", sa.Date(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", "ds"),
    )


def downgrade() -> None:
    op.drop_table("publications")
    with op.batch_alter_table("lineage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lineage_output_path"))
        batch_op.drop_index(batch_op.f("ix_lineage_input_path"))
    op.drop_table("lineage")
