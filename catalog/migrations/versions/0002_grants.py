"""grants, distribution log and audit log (shared extracts, re-identification)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("who", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("consumer", sa.String(length=60), nullable=False),
        sa.Column("token", sa.String(length=80), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("found", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "distributions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("consumer", sa.String(length=60), nullable=False),
        sa.Column("dataset_id", sa.String(length=120), nullable=False),
        sa.Column("ds", sa.Date(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=80), nullable=True),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("distributions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_distributions_consumer"), ["consumer"], unique=False)
        batch_op.create_index(batch_op.f("ix_distributions_ds"), ["ds"], unique=False)
        batch_op.create_index(batch_op.f("ix_distributions_grant_id"), ["grant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_distributions_run_id"), ["run_id"], unique=False)

    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("consumer", sa.String(length=60), nullable=False),
        sa.Column("dataset_id", sa.String(length=120), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("clear_fields", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("csv_encoding", sa.String(length=20), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=120), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grants_consumer"), ["consumer"], unique=False)
        batch_op.create_index(batch_op.f("ix_grants_dataset_id"), ["dataset_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_dataset_id"))
        batch_op.drop_index(batch_op.f("ix_grants_consumer"))
    op.drop_table("grants")
    with op.batch_alter_table("distributions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_distributions_run_id"))
        batch_op.drop_index(batch_op.f("ix_distributions_grant_id"))
        batch_op.drop_index(batch_op.f("ix_distributions_ds"))
        batch_op.drop_index(batch_op.f("ix_distributions_consumer"))
    op.drop_table("distributions")
    op.drop_table("audit_log")
