"""The scheduler's task queue (``mtp_tasks``).

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
        "mtp_tasks",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("request_id", sa.String(256), nullable=True, unique=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("task_id", sa.String(256), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("preemptible", sa.Boolean, nullable=False),
        sa.Column("checkpointed", sa.Boolean, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("max_runtime_s", sa.Float, nullable=True),
        sa.Column("resources", sa.Text, nullable=False),
        sa.Column("submitter", sa.String(256), nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("attempt_started_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("ran_s", sa.Float, nullable=False),
        sa.Column("preemptions", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("request", sa.String(16), nullable=True),
        sa.Column("requested_at", sa.Float, nullable=True),
        sa.Column("request_epoch", sa.Integer, nullable=True),
        sa.Column("job_id", sa.String(128), nullable=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("config_path", sa.Text, nullable=False),
        sa.Column("storage", sa.Text, nullable=False),
        sa.Column("run_name", sa.String(256), nullable=False),
        sa.Column("progress", sa.Text, nullable=True),
        sa.Column("progress_attempt", sa.Integer, nullable=True),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.Column("outcome_attempt", sa.Integer, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_mtp_tasks_state", "mtp_tasks", ["state", "priority", "seq"])


def downgrade() -> None:
    op.drop_index("ix_mtp_tasks_state", table_name="mtp_tasks")
    op.drop_table("mtp_tasks")
