"""Batch jobs declared in modelport.yaml and the history of their runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batch_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("schedule", sa.String(128), nullable=True),
        sa.Column("last_scheduled_for", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.String(256), nullable=True),
        sa.UniqueConstraint("environment", "name", name="uq_batch_jobs_env_name"),
    )
    op.create_table(
        "batch_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("environment", sa.String(128), nullable=False),
        sa.Column("job", sa.String(128), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("active_key", sa.String(300), nullable=True, unique=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("rows_in", sa.BigInteger, nullable=True),
        sa.Column("rows_out", sa.BigInteger, nullable=True),
        sa.Column("rows_rejected", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("started_by", sa.String(256), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("scheduled_for", TS, nullable=True),
        sa.UniqueConstraint(
            "environment", "job", "scheduled_for", name="uq_batch_runs_env_job_scheduled"
        ),
        sa.Index("ix_batch_runs_env_job_started", "environment", "job", "started_at"),
    )


def downgrade() -> None:
    op.drop_table("batch_runs")
    op.drop_table("batch_jobs")
