"""The study index: every ``mtp tune`` study and its trials, queryable without reading files.

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
        "mtp_studies",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("study_dir", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("searcher", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(256), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("trials", sa.Integer, nullable=False),
        sa.Column("best_trial", sa.String(64), nullable=True),
        sa.Column("best_value", sa.Float, nullable=True),
        sa.Column("best_params", sa.Text, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_table(
        "mtp_trials",
        sa.Column("study", sa.String(256),
                  sa.ForeignKey("mtp_studies.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("trial_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("iterations", sa.Integer, nullable=False),
        sa.Column("time_s", sa.Float, nullable=False),
        sa.Column("reused", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mtp_trials")
    op.drop_table("mtp_studies")
