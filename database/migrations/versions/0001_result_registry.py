"""The result registry: shared results, their consensus reports, claims; the meta table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mtp_meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "mtp_results",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("task_id", sa.String(256), nullable=False),
        sa.Column("node_id", sa.String(256), nullable=False),
        sa.Column("run_dir", sa.Text, nullable=False),
        sa.Column("model_path", sa.Text, nullable=False),
        sa.Column("shared_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("verified", sa.Boolean, nullable=False),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
    )
    op.create_index("ix_mtp_results_task_id", "mtp_results", ["task_id"])
    op.create_index("ix_mtp_results_expires_at", "mtp_results", ["expires_at"])
    op.create_table(
        "mtp_verifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(128),
                  sa.ForeignKey("mtp_results.key", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("consistent", sa.Boolean, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
    )
    op.create_index("ix_mtp_verifications_key", "mtp_verifications", ["key", "id"])
    op.create_table(
        "mtp_claims",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("claimed_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("mtp_claims", "mtp_verifications", "mtp_results", "mtp_meta"):
        op.drop_table(table)
