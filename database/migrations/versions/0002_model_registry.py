"""The model registry's own records: lineage of versions and the history of alias moves.

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
        "mtp_model_versions",
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("run_dir", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("cache_key", sa.String(128), nullable=True),
        sa.Column("parent_version", sa.Integer, nullable=True),
        sa.Column("relation", sa.String(32), nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
    )
    op.create_index("ix_mtp_model_versions_cache_key", "mtp_model_versions", ["cache_key"])
    op.create_table(
        "mtp_alias_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("from_version", sa.Integer, nullable=True),
        sa.Column("to_version", sa.Integer, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
    )
    op.create_index("ix_mtp_alias_moves_model_alias", "mtp_alias_moves",
                    ["model", "alias", "id"])


def downgrade() -> None:
    op.drop_table("mtp_alias_moves")
    op.drop_table("mtp_model_versions")
