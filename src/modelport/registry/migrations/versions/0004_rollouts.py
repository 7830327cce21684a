"""Rollouts: controlled deployment changes, stepped and judged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("environment", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("active_key", sa.String(300), nullable=True, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("candidate", sa.JSON, nullable=False),
        sa.Column("baseline", sa.JSON, nullable=False),
        sa.Column("policy", sa.JSON, nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("step_started_at", TS, nullable=True),
        sa.Column("analyses", sa.JSON, nullable=False),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("incident_id", sa.Integer, nullable=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(256), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Index("ix_rollouts_env_endpoint", "environment", "endpoint"),
    )


def downgrade() -> None:
    op.drop_table("rollouts")
